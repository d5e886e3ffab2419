"""The paper's Figures 5–8 (PNG and PDF) from the files the runs and `llbbench saddle` wrote: nothing here trains.

Fig. 8 draws the network next to a saddle (saddle.json) and every optimizer that needs no network on two
stand-in saddle problems (saddle_analytic.json; claim 7 of docs/verdicts.md).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure  # figures without pyplot: no global state, no display backend

from ..paper import NETWORKS, OPTIMIZER_NAMES, OPTIMIZERS, SADDLES, ordered
from ..records.run import EPOCHS
from .runs import ADDED_LABELS, FINISHED, layer_rates, optimizer_label

DECAY_K = 0.9  # Fig. 6: the paper's k of α0/(1+kt) and α0·e^(−kt), t in epochs


def _save(figure: Figure, out: Path, name: str) -> list[Path]:
    paths = []
    for suffix, metadata in ((".png", {"Software": None}), (".pdf", {"CreationDate": None, "Producer": None})):
        path = out / f"{name}{suffix}"
        figure.savefig(path, dpi=120, bbox_inches="tight", metadata=metadata)
        paths.append(path)
    return paths


def _panels(count: int) -> tuple[Figure, list[Axes]]:
    columns = min(count, 3)
    rows = math.ceil(count / columns)
    figure = Figure(figsize=(4.2 * columns, 3.3 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False)
    for extra in axes.flat[count:]:
        extra.set_visible(False)
    return figure, list(axes.flat[:count])


def clip_blown_up(ax: Axes, means: dict[str, pd.Series], factor: float = 1.5) -> list[str]:
    """Keep a panel readable when some optimizer's loss blows up: when a mean curve rises above `factor` times
    the median first-epoch loss, the y axis stops there and the panel names the curves that leave it."""
    starts = [float(m.iloc[0]) for m in means.values() if len(m) and np.isfinite(m.iloc[0])]
    if not starts:
        return []
    top = factor * float(np.median(starts))
    above = [name for name, m in means.items() if m.max() > top]
    if above:
        low = min(float(np.nanmin(m.to_numpy())) for m in means.values() if m.notna().any())
        ax.set_ylim(low - 0.05 * (top - low), top)
        ax.text(0.98, 0.98, "off the scale: " + ", ".join(above), transform=ax.transAxes, ha="right", va="top",
                fontsize=7)  # fmt: skip
    return above


CONTROL_LINES = {"global": "--", "cosine": "--", "inverse_time": ":"}  # a control's line; its colour is its base's


ADDED_COLORS = ("C9", "black", "#8b4513", "#6a5acd", "#2e8b57", "#daa520", "#c71585", "#4682b4")  # not C0-C8
ADDED_LINE = (0, (6, 1.5, 1, 1.5))  # dash-dot, dense: no control's line


def optimizer_style(variant: str) -> dict:
    """How an optimizer looks in every figure: each of the paper's nine its own colour, LLb-SGD thicker and on
    top; a control (`sgd+cosine`, `llb+global`) its base optimizer's colour, dashed or dotted; an optimizer from
    outside the paper a colour none of the nine has (by its place among the report's added optimizers, sorted)
    and a line of its own."""
    name, _, extra = variant.partition("+")
    if name not in OPTIMIZERS:
        added = sorted({*ADDED_LABELS, name})
        color = ADDED_COLORS[added.index(name) % len(ADDED_COLORS)]
        return {"color": color, "ls": CONTROL_LINES.get(extra, ADDED_LINE) if extra else ADDED_LINE, "lw": 1.6}
    color = f"C{OPTIMIZERS.index(name) % 10}"
    if extra:
        return {"color": color, "ls": CONTROL_LINES.get(extra, "-."), "lw": 1.2}
    return {"color": color, **({"lw": 2.2, "zorder": 5} if name == "llb" else {"lw": 1.2})}


def fig5_training_curves(curves: pd.DataFrame, out: Path, scale_note: str) -> list[Path]:
    """Training loss per epoch of every optimizer (`epoch_curves` of the runs), one panel per network: mean
    over folds, ± std band; failed runs are left out."""
    curves = curves[curves["status"] != "failed"] if len(curves) else curves
    if curves.empty:
        return []
    networks = ordered(curves["model"], NETWORKS)
    figure, axes = _panels(len(networks))
    for ax, network in zip(axes, networks, strict=True):
        of_network = curves[curves["model"] == network]
        means = {}
        for optimizer in ordered(of_network["optimizer"], OPTIMIZERS):
            stats = of_network[of_network["optimizer"] == optimizer].groupby("epoch")["train_loss"].agg(["mean", "std"])
            name = optimizer_label(optimizer)
            line = ax.plot(stats.index, stats["mean"], label=name, **optimizer_style(optimizer))[0]
            ax.fill_between(stats.index, stats["mean"] - stats["std"].fillna(0), stats["mean"] + stats["std"].fillna(0),
                            color=line.get_color(), alpha=0.15, lw=0)  # fmt: skip
            means[name] = stats["mean"]
        ax.set(title=network, xlabel="epoch", ylabel="training loss")
        clip_blown_up(ax, means)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    figure.suptitle(f"Fig. 5: training loss, mean over folds ± std ({scale_note})", fontsize=10)
    return _save(figure, out, "fig5_training_loss")


def _rate_trace(path: str) -> tuple[pd.DataFrame, float] | None:
    """A run's layer rates indexed by step, and its steps per epoch; None without rates or finished epochs."""
    rates, epochs = layer_rates(path), pd.read_csv(Path(path) / EPOCHS)
    if rates is None or epochs.empty:
        return None
    return rates.set_index("step"), epochs["step"].iloc[0] / epochs["epoch"].iloc[0]


def fig6_layer_rates(runs: pd.DataFrame, out: Path, scale_note: str) -> list[Path]:
    """LLb-SGD's mean layer rate against α0/(1+kt) and α0·e^(−kt) (t in epochs), with one line per layer."""
    llb = runs[(runs["optimizer"] == "llb") & (runs["status"] != "failed")]
    per_network = {}
    for network in ordered(llb["model"], NETWORKS):
        frames = []
        for run in llb[llb["model"] == network].itertuples():
            trace = _rate_trace(run.path)
            if trace is not None:
                frames.append((trace[0] / run.lr, trace[1], run.lr))
        if frames:
            per_network[network] = frames
    if not per_network:
        return []
    figure, axes = _panels(len(per_network))
    for ax, (network, frames) in zip(axes, per_network.items(), strict=True):
        first, steps_per_epoch, lr = frames[0]
        t = first.index / steps_per_epoch
        for layer in first.columns:
            ax.plot(t, first[layer] * lr, color="0.6", lw=0.5, alpha=0.5)
        mean = pd.concat([f.mean(axis=1) for f, _, _ in frames], axis=1).mean(axis=1) * lr
        ax.plot(mean.index / steps_per_epoch, mean, color="C0", lw=2, label="LLb-SGD, mean over layers")
        t_ref = np.linspace(0, t.max(), 200)
        ax.plot(t_ref, lr / (1 + DECAY_K * t_ref), "--", color="C1", label=f"α0/(1+{DECAY_K}t)")
        ax.plot(t_ref, lr * np.exp(-DECAY_K * t_ref), ":", color="C2", label=f"α0·e^(−{DECAY_K}t)")
        ax.set(title=network, xlabel="epoch t", ylabel="learning rate", yscale="log")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    figure.suptitle(f"Fig. 6: LLb-SGD's layer rates (grey: each layer, first fold) ({scale_note})", fontsize=10)
    return _save(figure, out, "fig6_layer_rates")


def ablation_rates(runs: pd.DataFrame, out: Path, scale_note: str) -> list[Path]:
    """The reconstruction ablation's rate traces: one panel per LLb-SGD variant, its mean layer rate over the
    epochs (first fold) on each network, in the manner of Fig. 6."""
    if not len(runs):
        return []
    runs = runs[runs["status"] != "failed"].sort_values(["fold", "path"])
    variants = sorted({(r.direction, r.conv_norm, r.loss_ema, r.max_lr_ratio) for r in runs.itertuples()}, key=str)
    figure, axes = _panels(len(variants))
    for ax, variant in zip(axes, variants, strict=True):
        of = runs[
            (runs["direction"] == variant[0])
            & (runs["conv_norm"] == variant[1])
            & (runs["loss_ema"] == variant[2])
            & (runs["max_lr_ratio"] == variant[3])
        ]
        for network in ordered(of["model"], NETWORKS):
            trace = _rate_trace(of[of["model"] == network].iloc[0].path)
            if trace is not None:
                mean = trace[0].mean(axis=1)
                ax.plot(mean.index / trace[1], mean, lw=1.5, label=network)
        ceiling = f", ceiling {variant[3]:g}·α0" if variant[3] != 1.0 else ""
        ax.set(title=f"{variant[0]}, {variant[1]}, ema {variant[2]:g}{ceiling}", xlabel="epoch t",
               ylabel="mean layer rate")  # fmt: skip
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    figure.suptitle(f"Reconstruction ablation: LLb-SGD's mean layer rate per variant ({scale_note})", fontsize=10)
    return _save(figure, out, "ablation_rates")


def fig7_initial_rate(runs: pd.DataFrame, out: Path, scale_note: str) -> list[Path]:
    """Iterations to stop and final losses against the initial rate, one line per network."""
    done = runs[runs["status"].isin(FINISHED)]
    if done.empty:
        return []
    figure = Figure(figsize=(9, 3.4))
    left, right = figure.subplots(1, 2)
    for network in ordered(done["model"], NETWORKS):
        stats = done[done["model"] == network].groupby("lr")[["steps", "train_loss", "test_loss"]].mean()
        left.plot(stats.index, stats["steps"], "o-", label=network)
        line = right.plot(stats.index, stats["train_loss"], "o-", label=f"{network} train")[0]
        right.plot(stats.index, stats["test_loss"], "s--", color=line.get_color(), label=f"{network} test")
    left.set(xscale="log", xlabel="initial rate α0", ylabel="iterations to stop")
    right.set(xscale="log", xlabel="initial rate α0", ylabel="final loss")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    figure.suptitle(f"Fig. 7: LLb-SGD against the initial rate ({scale_note})", fontsize=10)
    return _save(figure, out, "fig7_initial_rate")


def fig8_saddles(out: Path, analytic: dict | None, measured: dict | None = None) -> list[Path]:
    """Top: the network next to a saddle (`llbbench saddle`, when measured): the first seed's trajectories on the
    plane of their two principal components over the loss there, and every optimizer's loss against the steps.
    Bottom: the analytic saddles (saddle_analytic.json, when written), every optimizer that needs no network from
    the same start. Nothing is drawn without either."""
    if analytic is None and not measured:
        return []
    rows = bool(measured) + (analytic is not None)
    figure = Figure(figsize=(10, 4.2 * rows), layout="constrained")
    axes = figure.subplots(rows, 2, squeeze=False)
    if measured:
        _network_saddle(axes[0][0], axes[0][1], measured)
    if analytic is None:
        title = "Fig. 8: a network next to a saddle (llbbench saddle --analytic adds the analytic saddles)"
    else:
        note = _analytic_saddles(axes[-1], analytic)
        title = ("Fig. 8: a network next to a saddle (top); " if measured else "Fig. 8: ") + (
            f"{analytic['steps']} steps from {tuple(analytic['start'])} near the analytic saddles (0, 0){note}"
        )
    figure.suptitle(title, fontsize=10)
    return _save(figure, out, "fig8_saddles")


def _analytic_saddles(axes: list[Axes], analytic: dict) -> str:
    """The analytic saddles' panels; the title's note on the optimizers left out."""
    start, trajectories = tuple(analytic["start"]), analytic["paths"]
    x, y = np.meshgrid(np.linspace(-1.2, 1.2, 200), np.linspace(-2.2, 2.2, 200))
    for ax, (problem, (title, f)) in zip(axes, SADDLES.items(), strict=True):
        grid = f(torch.tensor(np.stack([x, y]))).numpy()
        ax.contour(x, y, grid, levels=25, cmap="Greys", linewidths=0.6)
        for name, trace in trajectories[problem].items():
            trace = np.asarray(trace, dtype=np.float64)
            ax.plot(trace[:, 0], trace[:, 1], label=OPTIMIZER_NAMES.get(name, name), **_saddle_style(name))
        ax.plot(*start, "k*", ms=8)
        ax.set(title=f"analytic: {title}", xlabel="x", ylabel="y", xlim=(-1.2, 1.2), ylim=(-2.2, 2.2))
    axes[0].legend(fontsize=7, loc="lower left")
    left_out = analytic["left_out"]
    return f"; left out (need a network): {', '.join(left_out)}" if left_out else ""


def _saddle_style(name: str) -> dict:
    """`optimizer_style`, with LLb-SGD dashed: near a saddle its path lies on SGD's, and shows through it."""
    return {**optimizer_style(name), **({"ls": "--"} if name == "llb" else {})}


def _network_saddle(plane_ax: Axes, loss_ax: Axes, measured: dict) -> None:
    drawn = measured["plane"]
    axis = np.asarray(drawn["axis"])
    plane_ax.contour(axis, axis, np.asarray(drawn["loss"]), levels=20, cmap="Greys", linewidths=0.6)
    for name in ordered(drawn["paths"], OPTIMIZERS):
        path = np.asarray(drawn["paths"][name])
        plane_ax.plot(path[:, 0], path[:, 1], label=OPTIMIZER_NAMES.get(name, name), **_saddle_style(name))
    plane_ax.plot(0, 0, "k*", ms=8)
    explained = ", ".join(f"{e:.0%}" for e in drawn["explained"])
    gone = f"; blew up: {', '.join(OPTIMIZER_NAMES.get(n, n) for n in drawn['left_out'])}" if drawn["left_out"] else ""
    plane_ax.set(title=f"network, seed 0: principal plane ({explained}){gone}", xlabel="PC 1", ylabel="PC 2")
    plane_ax.title.set_fontsize(8)
    plane_ax.legend(fontsize=7)
    for name in ordered(measured["probe_losses"], OPTIMIZERS):
        losses = np.array([np.nan if v is None else v for v in measured["probe_losses"][name][0]], dtype=float)
        loss_ax.plot(np.arange(len(losses)), losses, label=OPTIMIZER_NAMES.get(name, name), **_saddle_style(name))
    start = measured["probe_losses"][ordered(measured["probe_losses"], OPTIMIZERS)[0]][0][0]
    bar = (1 - measured["escape_drop"]) * start
    loss_ax.axhline(bar, color="k", lw=0.8, ls=":")
    loss_ax.set(title=f"network, seed 0: loss on the probe batch (dotted: escape, {measured['escape_drop']:.0%} "
                f"below the start)", xlabel="step", ylabel="loss", ylim=(0, 1.3 * start))  # fmt: skip
    loss_ax.title.set_fontsize(8)
    loss_ax.grid(alpha=0.3)
