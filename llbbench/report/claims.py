"""`claims.md` and `claims.json`: every claim of the paper with the measured numbers, its rule and a verdict
(holds, contradicted, inconclusive, not measured). The rules are explained in docs/verdicts.md; the thresholds
are the constants below."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .runs import CLASSES, FINISHED, NETWORKS, OPTIMIZER_NAMES, OPTIMIZERS, optimizer_label, ordered
from .stats import CONTRADICTED, HOLDS, INCONCLUSIVE, NOT_MEASURED, Interval, combine, slope_interval, t_interval

LEARNED = 0.9  # a network learned when its best optimizer's final training loss is below LEARNED · ln C
HARDLY = 0.10  # "hardly depends": a spread (max − min) / mean of at most 10%
SPEEDUP = 3.0  # "about 4× faster": the interval of the speed-up ratio lies above 3
SMOOTH = 5  # claim 1: the training loss of steps.csv as a trailing mean over this many logged rows
PAPER_NETWORKS = NETWORKS[:6]
SAME_SETTING = ["model", "optimizer", "batch_size", "init", "lr"]  # what a claim's cell of runs shares but folds


@dataclass
class Claim:
    id: int
    title: str
    paper: str
    rule: str
    verdict: str = NOT_MEASURED
    lines: list[str] = field(default_factory=list)
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)  # per network (claim 7: per optimizer)
    excluded: list[str] = field(default_factory=list)  # networks that did not learn
    note: str | None = None  # why the verdict is `not measured` although numbers exist (a stand-in dataset)

    def markdown(self) -> str:
        body = "\n".join(f"- {line}" for line in self.lines) if self.lines else "- no runs to measure it"
        parts = [f"## {self.id}. {self.title}", f"*Paper:* {self.paper}", f"*Rule:* {self.rule}", body]
        verdict = f"**Verdict: {self.verdict}**" + (f" ({self.note})" if self.note else "")
        return "\n\n".join([*parts, verdict]) + "\n"

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "claim": self.title, "paper": self.paper, "rule": self.rule, "verdict": self.verdict,
                "note": self.note, "excluded": self.excluded, "rows": self.rows}  # fmt: skip


# --- which runs and values enter ------------------------------------------------------------------------------


def chance(runs: pd.DataFrame) -> float | None:
    """ln C of the runs' dataset (C classes), or None when unknown."""
    counts = runs["classes"].dropna() if "classes" in runs else pd.Series(dtype=float)
    if len(counts):
        return math.log(float(counts.iloc[0]))
    known = [CLASSES[d] for d in runs["dataset"].unique() if d in CLASSES]
    return math.log(known[0]) if known else None


def _settled(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs whose result counts: finished or diverged (a failed run is an error, not a result)."""
    return runs[runs["status"].isin((*FINISHED, "diverged"))] if len(runs) else runs


def learned(runs: pd.DataFrame) -> tuple[bool, float | None, float | None]:
    """(whether the network of `runs` learned, its best mean final training loss, the bar LEARNED · ln C).

    The best is over the cells of runs that share a setting but the fold (optimizer, batch size, init, rate);
    without a known number of classes every network counts as learned."""
    finished = runs[runs["status"].isin(FINISHED)]
    best = finished.groupby(SAME_SETTING, dropna=False)["train_loss"].mean().min() if len(finished) else math.nan
    bar = chance(runs)
    best = None if pd.isna(best) else float(best)
    if bar is None:
        return True, best, None
    return best is not None and best < LEARNED * bar, best, LEARNED * bar


def networks_that_learned(claim: Claim, runs: pd.DataFrame) -> Iterator[tuple[str, pd.DataFrame]]:
    """Each network of `runs` that learned (in the paper's order); the others are named in `claim.excluded`."""
    for network in ordered(runs["model"], NETWORKS) if len(runs) else []:
        of = runs[runs["model"] == network]
        ok, best, bar = learned(of)
        if ok:
            yield network, of
        else:
            claim.excluded.append(network)
            shown = "no finished run" if best is None else f"best final training loss {best:.4f}"
            claim.lines.append(f"{network}: did not learn ({shown}, not below {bar:.4f} = {LEARNED}·ln C): left out")


def with_diverged(runs: pd.DataFrame, metric: str) -> pd.Series:
    """`metric` of `runs` (one network's), a diverged run counted as worse than every finished one: as the larger
    of ln C and the worst finished value of the network in these runs (so it ranks last and is never dropped)."""
    values = runs[metric].astype(float).copy()
    diverged = runs["status"] == "diverged"
    finite = values[~diverged & runs["status"].isin(FINISHED)].dropna()
    worst = max([float(finite.max())] if len(finite) else [], default=0.0)
    values[diverged] = max(worst, chance(runs) or 0.0)
    return values


def per_fold(runs: pd.DataFrame, metric: str, by: str) -> pd.DataFrame:
    """Fold × (the values of `by`) table of `metric`, a diverged run counted as in `with_diverged`."""
    settled = _settled(runs)
    frame = settled.assign(value=with_diverged(settled, metric), fold=settled["fold"].fillna(-1))
    return frame.pivot_table(index="fold", columns=by, values="value", aggfunc="mean")


def paired(runs: pd.DataFrame, metric: str, a: str, b: str, by: str = "optimizer") -> Interval:
    """The interval of `metric`(a) − `metric`(b), paired by fold (folds that hold both)."""
    table = per_fold(runs, metric, by)
    if a not in table or b not in table:
        return t_interval([])
    return t_interval((table[a] - table[b]).dropna())


def spread(values: pd.Series) -> float:
    """(max − min) / mean."""
    return float((values.max() - values.min()) / values.mean())


# --- claims 1-3: Table 2 --------------------------------------------------------------------------------------


def _smoothed_steps(path: str) -> pd.DataFrame | None:
    """A run's steps.csv with the loss as a trailing mean over SMOOTH logged rows (None without the file)."""
    file = Path(path) / "steps.csv"
    if not file.exists():
        return None
    steps = pd.read_csv(file)
    steps["smooth"] = steps["loss"].astype(float).rolling(SMOOTH, min_periods=SMOOTH).mean()
    return steps.dropna(subset=["smooth"])


def _first_reach(steps: pd.DataFrame, target: float) -> int | None:
    reached = steps[steps["smooth"] <= target]
    return int(reached["step"].iloc[0]) if len(reached) else None


def speedup(runs: pd.DataFrame) -> Claim:
    claim = Claim(
        1,
        "LLb-SGD converges about 4× faster than SGD on CIFAR-10",
        "on CIFAR-10 LLb-SGD converges about 4× faster than SGD (gap visible after 20 epochs).",
        f"per network and fold, from steps.csv (the mini-batch loss as a trailing mean over {SMOOTH} logged rows): "
        "the target is SGD's final smoothed training loss; the ratio is the step at which SGD's smoothed loss first "
        "reaches it over the step at which LLb-SGD's does (one that never does, or diverged, counted as reaching it "
        "one logged step after its last: a bound in its favour). Holds on a network when the 95% interval of the "
        f"ratio over folds (a t-interval of its logarithm) lies above {SPEEDUP:g}, contradicted when below; "
        "holds when it holds on every CIFAR-10 network.",
    )
    outcomes = []
    for network, of in networks_that_learned(claim, runs):
        ratios, notes = [], []
        for fold in sorted(of["fold"].dropna().unique()):
            pair = {o: of[(of["fold"] == fold) & (of["optimizer"] == o)] for o in ("llb", "sgd")}
            if any(p.empty for p in pair.values()):
                continue
            sgd, llb = (_smoothed_steps(pair[o]["path"].iloc[0]) for o in ("sgd", "llb"))
            if sgd is None or llb is None or sgd.empty or llb.empty:
                notes.append(f"fold {fold}: no steps.csv")
                continue
            if pair["sgd"]["status"].iloc[0] == "diverged" or not np.isfinite(sgd["smooth"].iloc[-1]):
                notes.append(f"fold {fold}: SGD diverged, no target")
                continue
            target = float(sgd["smooth"].iloc[-1])
            mine = _first_reach(llb, target) if pair["llb"]["status"].iloc[0] != "diverged" else None
            stride = int(llb["step"].diff().dropna().median()) if len(llb) > 1 else 1
            ratios.append(
                _first_reach(sgd, target) / (mine if mine is not None else int(llb["step"].iloc[-1]) + stride)
            )
            notes.append(
                f"fold {fold}: target {target:.4f}, SGD {_first_reach(sgd, target)} steps, LLb-SGD "
                + (f"{mine} steps" if mine is not None else "never")
            )
        if not ratios:
            continue
        log_ratio = t_interval(np.log(ratios))
        outcome = log_ratio.outcome("above", math.log(SPEEDUP))
        shown = Interval(*(math.exp(v) for v in (log_ratio.mean, log_ratio.low, log_ratio.high)), log_ratio.n)
        claim.lines.append(f"{network}: speed-up {shown.text('.2f', unit='×')} ({'; '.join(notes)}): {outcome}")
        claim.rows[network] = {"verdict": outcome, "ratio": shown.as_dict(), "per_fold": [round(r, 4) for r in ratios]}
        outcomes.append(outcome)
    claim.verdict = combine(outcomes)
    return claim


def beats(claim: Claim, runs: pd.DataFrame, rivals: tuple[str, ...]) -> Claim:
    """LLb-SGD against each rival on final training and test loss, paired by fold: holds on a network when every
    interval of (rival − LLb-SGD) lies above zero."""
    outcomes = []
    for network, of in networks_that_learned(claim, runs):
        present = [r for r in rivals if r in set(of["optimizer"])]
        if "llb" not in set(of["optimizer"]) or not present:
            continue
        row, parts, shown = {}, [], []
        for rival in present:
            for metric in ("train_loss", "test_loss"):
                interval = paired(of, metric, rival, "llb")
                outcome = interval.outcome("above")
                row[f"{rival}:{metric}"] = {"verdict": outcome, "difference": interval.as_dict()}
                parts.append(outcome)
            shown.append(
                f"{optimizer_label(rival)} {row[f'{rival}:train_loss']['difference']['mean']:+.4f}/"
                f"{row[f'{rival}:test_loss']['difference']['mean']:+.4f} "
                f"({row[f'{rival}:train_loss']['verdict']}/{row[f'{rival}:test_loss']['verdict']})"
            )
        outcome = combine(parts)
        claim.rows[network] = {"verdict": outcome, **row}
        claim.lines.append(f"{network}: rival − LLb-SGD, train/test (paired by fold): {'; '.join(shown)}: {outcome}")
        outcomes.append(outcome)
    claim.verdict = combine(outcomes)
    return claim


def beats_rule(names: str) -> str:
    return (
        f"per network: the final training loss and the final test loss of each of {names} minus LLb-SGD's, paired "
        "by fold (a diverged run counted as the larger of ln C and the network's worst finished loss); a difference "
        "holds when its 95% t-interval lies above zero and is contradicted when below. The claim holds on a network "
        "when every difference holds, is contradicted when any is, and holds when it holds on every network."
    )


def stand_in(runs: pd.DataFrame) -> bool:
    """Whether ImageNet's claim is being measured on another dataset (the CPU scale's CIFAR-10 stand-in)."""
    return bool(len(runs)) and not (runs["dataset"] == "imagenet").any()


# --- claims 4-6: stability ------------------------------------------------------------------------------------


def _fold_spreads(runs: pd.DataFrame, metric: str, factor: str) -> pd.Series:
    """Per fold, the spread of `metric` over the values of `factor` (folds that hold every value)."""
    table = per_fold(runs, metric, factor).dropna()
    return table.apply(spread, axis=1) if len(table.columns) >= 2 else pd.Series(dtype=float)


def stability(of: pd.DataFrame, metric: str, factor: str) -> tuple[str, dict[str, Any], str]:
    """LLb-SGD's spread of `metric` over `factor` against SGD's on the same sweep and against HARDLY.

    Holds when the interval of (SGD's spread − LLb-SGD's), paired by fold, lies above zero and LLb-SGD's spread
    interval lies below HARDLY; contradicted when the first lies below zero or the second above HARDLY."""
    llb = _fold_spreads(of[of["optimizer"] == "llb"], metric, factor)
    sgd = _fold_spreads(of[of["optimizer"] == "sgd"], metric, factor)
    mine = t_interval(llb)
    versus = t_interval((sgd - llb).dropna()) if len(sgd) else t_interval([])
    if mine.n == 0:
        return NOT_MEASURED, {}, ""
    under = HOLDS if mine.below(HARDLY) else CONTRADICTED if mine.above(HARDLY) else INCONCLUSIVE
    smaller = versus.outcome("above") if versus.n else INCONCLUSIVE  # no SGD control: it cannot hold
    outcome = combine([under, smaller])
    numbers = {"llb_spread": mine.as_dict(), "sgd_minus_llb_spread": versus.as_dict(), "verdict": outcome}
    text = f"{metric.replace('_', ' ')} spread LLb-SGD {mine.text('.1%')}, SGD − LLb-SGD " + (
        versus.text("+.1%") if versus.n else "— (no SGD control)"
    )
    return outcome, numbers, text


def _not_run(claim: Claim, runs: pd.DataFrame) -> None:
    """At a CPU scale, name the paper's networks this sweep left out ("not run at small scale")."""
    if len(runs) and set(runs["scale"].astype(str)) - {"full"}:
        for network in PAPER_NETWORKS:
            if network not in set(runs["model"]):
                claim.lines.append(f"{network}: not run at small scale")


def batch_size(runs: pd.DataFrame) -> Claim:
    claim = Claim(
        4,
        "Training loss hardly depends on the batch size; test loss improves with larger batches",
        "training loss hardly depends on batch size (16–256) while test loss improves with larger batches.",
        "per network (Table 3: LLb-SGD and its SGD control over the batch sizes): (a) per fold, the spread "
        "(max − min)/mean of the final training loss over the batch sizes; LLb-SGD's 95% interval must lie below "
        f"{HARDLY:.0%} and the interval of SGD's spread minus LLb-SGD's (paired by fold) above zero; (b) the trend: "
        "per fold, the least-squares slope of LLb-SGD's final test loss on log2(batch size); the 95% t-interval of "
        "the slopes over folds (a 5% significance level) must lie below zero. Holds on a network when (a) and (b) "
        "hold, contradicted when either is contradicted; holds when it holds on every network.",
    )
    outcomes = []
    for network, of in networks_that_learned(claim, runs):
        if of["batch_size"].nunique() < 2 or "llb" not in set(of["optimizer"]):
            continue
        flat, numbers, text = stability(of, "train_loss", "batch_size")
        table = per_fold(of[of["optimizer"] == "llb"], "test_loss", "batch_size").dropna()
        sizes = np.log2(np.asarray(table.columns, dtype=float))
        trend = t_interval([slope_interval(sizes, row.to_numpy()).mean for _, row in table.iterrows()])
        falls = trend.outcome("below") if trend.n else NOT_MEASURED
        outcome = combine([flat, falls])
        claim.rows[network] = {"verdict": outcome, "train_loss": numbers,
                               "test_slope_per_doubling": {**trend.as_dict(), "verdict": falls}}  # fmt: skip
        claim.lines.append(
            f"{network}: {text} ({flat}); LLb-SGD's test loss per doubling of the batch {trend.text('+.4f')} "
            f"({falls}): {outcome}"
        )
        outcomes.append(outcome)
    _not_run(claim, runs)
    claim.verdict = combine(outcomes)
    return claim


def initialization(runs: pd.DataFrame) -> Claim:
    claim = Claim(
        5,
        "Results hardly depend on the initialization",
        "results hardly depend on the initialization (uniform, normal, Xavier, MSRA).",
        "per network (Table 4: LLb-SGD and its SGD control over the initializations), for the final training loss "
        "and for the final test loss: per fold, the spread (max − min)/mean over the initializations; LLb-SGD's 95% "
        f"interval must lie below {HARDLY:.0%} and the interval of SGD's spread minus LLb-SGD's (paired by fold) above "
        "zero. Holds on a network when both losses do, contradicted when either is; holds when it holds on every "
        "network.",
    )
    outcomes = []
    for network, of in networks_that_learned(claim, runs):
        if of["init"].nunique() < 2 or "llb" not in set(of["optimizer"]):
            continue
        parts = {metric: stability(of, metric, "init") for metric in ("train_loss", "test_loss")}
        outcome = combine(p[0] for p in parts.values())
        claim.rows[network] = {"verdict": outcome, **{m: p[1] for m, p in parts.items()}}
        claim.lines.append(f"{network}: {'; '.join(f'{p[2]} ({p[0]})' for p in parts.values())}: {outcome}")
        outcomes.append(outcome)
    _not_run(claim, runs)
    claim.verdict = combine(outcomes)
    return claim


def initial_rate(runs: pd.DataFrame) -> Claim:
    claim = Claim(
        6,
        "The initial rate changes the number of iterations, not the final loss",
        "the initial learning rate changes the number of iterations, not the final loss.",
        "per network (Fig. 7: LLb-SGD at initial rates 0.001–0.1): (a) the iterations to stop must fall as the rate "
        "rises: the least-squares slope of log(steps) on log(rate) over the finished runs, with its 95% t-interval, "
        f"must lie below zero; (b) the spread (max − min)/mean of the final training loss over the rates (mean over "
        f"folds; a diverged run counted as in claim 2) must be at most {HARDLY:.0%}. Holds on a network when (a) and "
        "(b) hold, contradicted when (a)'s interval lies above zero or (b) fails; holds when it holds on every "
        "network.",
    )
    outcomes = []
    for network, of in networks_that_learned(claim, runs):
        if of["lr"].nunique() < 2:
            continue
        finished = of[of["status"].isin(FINISHED)]
        slope = slope_interval(np.log(finished["lr"].astype(float)), np.log(finished["steps"].astype(float)))
        falls = slope.outcome("below")
        losses = per_fold(of, "train_loss", "lr").mean()
        loss_spread = spread(losses)
        steady = HOLDS if loss_spread <= HARDLY else CONTRADICTED
        outcome = combine([falls, steady])
        claim.rows[network] = {"verdict": outcome, "log_steps_per_log_rate": {**slope.as_dict(), "verdict": falls},
                               "train_loss_spread": round(loss_spread, 6)}  # fmt: skip
        steps = finished.groupby("lr")["steps"].mean()
        claim.lines.append(
            f"{network}: iterations {', '.join(f'{s:.0f}' for s in steps)} at rates "
            f"{', '.join(f'{r:g}' for r in steps.index)}; slope of log steps on log rate {slope.text('+.3f')} "
            f"({falls}); final training-loss spread {loss_spread:.1%} ({steady}): {outcome}"
        )
        outcomes.append(outcome)
    _not_run(claim, runs)
    claim.verdict = combine(outcomes)
    return claim


# --- claim 7: Fig. 8 ------------------------------------------------------------------------------------------

ESCAPERS, STALLERS = ("llb", "adam"), ("sgd", "nag", "adagrad")


def saddles(measured: dict[str, Any] | None) -> Claim:
    """Claim 7 from Fig. 8's network measurement (`llbbench saddle`): its `escapes` map each optimizer to its
    escape step per seed (None: it did not escape within `budget` steps)."""
    claim = Claim(
        7,
        "LLb-SGD passes saddle points where SGD, NAG and Adagrad stall",
        "LLb-SGD passes saddle points where SGD, NAG and Adagrad stall (Fig. 8), and faster than Adam.",
        "Fig. 8's network started next to the saddle at zero weights, each optimizer at its configured rate, "
        "several seeds (each its own start and batch order): the escape is the first step at which the training "
        "loss on a fixed batch is 10% below its value at the start (one that never escapes counted as escaping one "
        "step after the budget). Paired by seed: LLb-SGD against SGD, NAG, Adagrad and Adam, and Adam against SGD, "
        "NAG and Adagrad; each difference (the other's steps minus its own) holds when its 95% t-interval lies above "
        "zero. Holds when every difference holds, contradicted when any lies below zero.",
    )
    escapes, budget = (measured or {}).get("escapes"), (measured or {}).get("budget")
    if not escapes or budget is None or "llb" not in escapes:
        return claim

    def steps(name: str) -> np.ndarray:
        return np.array([budget + 1 if s is None else s for s in escapes[name]], dtype=float)

    outcomes = []
    pairs = [("llb", r) for r in (*STALLERS, "adam")] + [("adam", r) for r in STALLERS]
    for mine, rival in pairs:
        if mine not in escapes or rival not in escapes:
            continue
        interval = t_interval(steps(rival) - steps(mine))
        outcome = interval.outcome("above")
        claim.rows[f"{mine}<{rival}"] = {"verdict": outcome, "difference": interval.as_dict()}
        claim.lines.append(
            f"{OPTIMIZER_NAMES[rival]} − {OPTIMIZER_NAMES[mine]} escape steps: {interval.text('+.1f')}: {outcome}"
        )
        outcomes.append(outcome)
    for name in ordered(escapes, OPTIMIZERS):
        shown = ", ".join("never" if s is None else str(s) for s in escapes[name])
        claim.lines.append(f"{OPTIMIZER_NAMES.get(name, name)}: escape step per seed {shown} (budget {budget})")
    claim.verdict = combine(outcomes)
    return claim


# --- all of them ----------------------------------------------------------------------------------------------


def split_by_dataset(runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(CIFAR-10 runs, ImageNet runs), by the data each run used: an ImageNet experiment run on CIFAR-10 (the
    CPU scale's stand-in) counts for ImageNet; runs on any other image folder count for neither."""
    if not len(runs):
        return runs, runs
    stand_in_runs = runs["experiment"].astype(str).str.contains("imagenet")
    cifar = runs[(runs["dataset"] == "cifar10") & ~stand_in_runs]
    imagenet = runs[(runs["dataset"] == "imagenet") | ((runs["dataset"] == "cifar10") & stand_in_runs)]
    return cifar, imagenet


def all_claims(groups: dict[str, pd.DataFrame], saddle: dict[str, Any] | None = None) -> list[Claim]:
    """The seven claims from the one-shot runs of each experiment group and Fig. 8's network measurement."""
    empty = pd.DataFrame()
    cifar, imagenet = split_by_dataset(groups.get("table2", empty))
    rivals = ("nag", "pathsgd", "esgd")
    on_cifar = Claim(
        2,
        "LLb-SGD beats NAG, Path-SGD and ESGD on CIFAR-10",
        "on CIFAR-10 LLb-SGD beats NAG, Path-SGD and ESGD.",
        beats_rule(", ".join(OPTIMIZER_NAMES[r] for r in rivals)),
    )
    on_imagenet = Claim(
        3,
        "LLb-SGD is best on the ImageNet networks",
        "on ImageNet it is best, with final training/test loss 0.027/0.011 below the best competitor.",
        beats_rule("the eight other optimizers of the paper")
        + " Measured on another dataset (a stand-in), its numbers are shown and the verdict is not measured.",
    )
    imagenet_claim = beats(on_imagenet, imagenet, tuple(o for o in OPTIMIZERS if o != "llb"))
    if stand_in(imagenet):
        imagenet_claim.verdict, imagenet_claim.note = NOT_MEASURED, "stand-in: ImageNet's networks on CIFAR-10"
    return [
        speedup(cifar),
        beats(on_cifar, cifar, rivals),
        imagenet_claim,
        batch_size(groups.get("table3", empty)),
        initialization(groups.get("table4", empty)),
        initial_rate(groups.get("fig7", empty)),
        saddles(saddle),
    ]
