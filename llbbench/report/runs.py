"""Run directories read back into pandas: one row per run, and each run's curves.

Only the files a run writes are read (config.yaml, summary.json, epochs.csv, layer_lrs.csv); nothing of the
training code is imported.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

# the paper's order, for rows and columns
NETWORKS = ("resnet34", "resnet50", "alexnet", "vgg16", "googlenet", "resnet152", "smallcnn")
OPTIMIZERS = ("llb", "sgd", "pathsgd", "nag", "adagrad", "adam", "adadelta", "rmsprop", "esgd")
OPTIMIZER_NAMES = {
    "llb": "LLb-SGD",
    "sgd": "SGD",
    "pathsgd": "Path-SGD",
    "nag": "NAG",
    "adagrad": "Adagrad",
    "adam": "Adam",
    "adadelta": "Adadelta",
    "rmsprop": "RMSProp",
    "esgd": "ESGD",
}
INITS = ("uniform", "normal", "xavier", "msra", "default")
TUNING_FILE = "tuning.json"  # beside an experiment's run directories, written by `llbbench tune`
SADDLE_FILE = "saddle.json"  # Fig. 8 on a network, written by `llbbench saddle`
# how a run's rate came about: the configured rate (the paper's protocol), a tuned winner, both at once, or
# another rate of a tuning grid (a tuning run only: it enters no table but Table 1's tuning grids)
ONE_SHOT, TUNED, BOTH, TUNING = "one-shot", "tuned", "both", "tuning"
SKIP_FOLDERS = {".submitit", ".sweeps", ".hydra", "report"}
FINISHED = ("completed", "stopped")  # statuses whose final metrics count (a stopped run met its stop rule)


def optimizer_variant(optimizer: dict[str, Any], train: dict[str, Any]) -> str:
    """The optimizer as a comparison names it: its name, then `+<schedule>` for a schedule other than constant
    and `+global` for LLb-SGD with one shared rate (e.g. `sgd+cosine`, `llb+global`)."""
    label = optimizer["name"]
    if train.get("schedule", "constant") != "constant":
        label += f"+{train['schedule']}"
    if optimizer.get("groups", "layer") == "global":
        label += "+global"
    return label


def optimizer_label(variant: str) -> str:
    """A variant as a table shows it: `sgd+cosine` → `SGD (cosine)`."""
    name, *extras = variant.split("+")
    return OPTIMIZER_NAMES.get(name, name) + "".join(f" ({extra})" for extra in extras)


def find_runs(roots: Iterable[str | Path]) -> list[Path]:
    """Every run directory (one holding summary.json) below `roots`, sorted."""
    found = set()
    for root in map(Path, roots):
        if not root.exists():
            raise FileNotFoundError(f"no such results folder: {root}")
        for summary in root.rglob("summary.json"):
            if not SKIP_FOLDERS.intersection(summary.relative_to(root).parts[:-1]):
                found.add(summary.parent)
    return sorted(found)


def load_runs(roots: Iterable[str | Path]) -> tuple[pd.DataFrame, dict[str, str]]:
    """One row per run: what it was (experiment, dataset, network, optimizer, …) and how it ended; and the run
    directories that could not be read (a truncated summary.json or epochs.csv, …), each with the reason."""
    rows, unreadable = [], {}
    for path in find_runs(roots):
        try:
            rows.append(_row(path))
        except (OSError, ValueError, KeyError, TypeError, AttributeError, yaml.YAMLError) as e:
            unreadable[str(path)] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    columns = ["path", "experiment", "scale", "dataset", "model", "optimizer", "fold", "status", "protocol"]
    if not rows:
        return pd.DataFrame(columns=columns), unreadable
    runs = pd.DataFrame(rows)
    tunings = load_tunings(runs)
    runs["protocol"] = [protocol(row, tunings.get(str(Path(row.path).parent), [])) for row in runs.itertuples()]
    return runs, unreadable


def one_shot(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs at their configured rates (the paper's protocol)."""
    return runs[runs["protocol"].isin((ONE_SHOT, BOTH))] if len(runs) else runs


def tuned(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs at their tuned rates."""
    return runs[runs["protocol"].isin((TUNED, BOTH))] if len(runs) else runs


def load_tunings(runs: pd.DataFrame) -> dict[str, list[dict[str, Any]]]:
    """The tuning.json of each experiment folder that holds one (folder → its entries)."""
    found = {}
    for folder in sorted({str(Path(p).parent) for p in runs["path"]}):
        file = Path(folder) / TUNING_FILE
        if file.exists():
            try:
                found[folder] = json.loads(file.read_text())
            except ValueError as e:
                raise ValueError(f"{file} is unreadable ({e}); run llbbench tune again to rewrite it") from None
    return found


def load_saddle(roots: Iterable[str | Path]) -> dict[str, Any] | None:
    """The Fig. 8 measurement (`llbbench saddle`) under `roots`, the first found; None without one."""
    for root in map(Path, roots):
        for file in sorted(root.rglob(SADDLE_FILE)):
            try:
                return json.loads(file.read_text())
            except ValueError as e:
                raise ValueError(f"{file} is unreadable ({e}); run llbbench saddle again to rewrite it") from None
    return None


def protocol(run: Any, entries: list[dict[str, Any]]) -> str:
    """How `run`'s rate came about, from its experiment's tuning entries (ONE_SHOT without any)."""
    entry = next((e for e in entries if e["network"] == run.model and e["optimizer"] == run.optimizer), None)
    if entry is None:
        return ONE_SHOT

    lr = None if run.lr is None or pd.isna(run.lr) else float(run.lr)  # None (NaN in the table): the preset's

    def same(rate: float | None) -> bool:
        return rate is not None and lr is not None and math.isclose(lr, rate, rel_tol=1e-9)

    configured = same(entry["configured"]) or lr is None  # the preset's rate is the configured one
    tuned = same(entry.get("winner"))
    return BOTH if configured and tuned else TUNED if tuned else ONE_SHOT if configured else TUNING


def _row(path: Path) -> dict[str, Any]:
    config = yaml.safe_load((path / "config.yaml").read_text())
    summary = json.loads((path / "summary.json").read_text())
    _check_epochs(path, summary)
    final = summary.get("final") or {}
    optimizer, model, dataset, train = config["optimizer"], config["model"], config["dataset"], config["train"]
    fold = config.get("fold")
    return {
        "path": str(path),
        "experiment": config.get("experiment_name", "runs"),
        "scale": config.get("scale", "full"),
        "dataset": dataset["name"],
        "data": dataset.get("fingerprint"),
        "subset": dataset.get("subset"),
        "model": model["name"],
        "width": model.get("width", 1.0),
        "dropout": model.get("dropout"),
        "optimizer": optimizer_variant(optimizer, train),  # e.g. sgd, or sgd+cosine for a control
        "preset": optimizer.get("preset"),
        "lr": optimizer.get("lr"),
        "weight_decay": optimizer.get("weight_decay"),
        "threshold": optimizer.get("threshold"),
        "direction": optimizer.get("direction"),
        "conv_norm": optimizer.get("conv_norm"),
        "loss_ema": optimizer.get("loss_ema"),
        "xi": optimizer.get("xi"),
        "batch_size": train["batch_size"],
        "epoch_budget": train["epochs"],
        "init": config["init"]["name"],
        "architecture": architecture(model),
        "fold": None if fold is None or str(fold).lower() == "none" else int(fold),
        "folds": config.get("cv", {}).get("folds"),
        "seed": config.get("seed"),
        "status": summary["status"],
        "classes": summary.get("num_classes"),
        "steps": summary.get("steps"),
        "epochs": summary.get("epochs"),
        "seconds": summary.get("seconds"),
        "train_loss": final.get("train_loss"),
        "test_loss": final.get("test_loss"),
        "test_acc": final.get("test_acc"),
        "val_loss": final.get("val_loss"),
    }


def architecture(model: dict[str, Any]) -> str:
    """A network's options as run, beyond its name, form and width: switches that are on and values, e.g.
    `batch_norm, dropout 0` (empty when there are none)."""
    shown = []
    for key, value in model.items():
        if key in ("name", "form", "width") or value is None or value is False:
            continue
        shown.append(key if value is True else f"{key} {value:g}" if isinstance(value, float) else f"{key} {value}")
    return ", ".join(shown)


def _check_epochs(path: Path, summary: dict[str, Any]) -> None:
    """epochs.csv must hold one complete row per epoch that summary.json counts (a cut file is not averaged)."""
    file = path / "epochs.csv"
    expected = summary.get("epochs") or 0
    if not file.exists():
        if expected:
            raise ValueError(f"{file} is missing, but summary.json counts {expected} epochs")
        return
    frame = pd.read_csv(file)
    complete = frame.dropna(subset=["epoch", "step", "train_loss"]) if len(frame) else frame
    if len(frame) != expected or len(complete) != len(frame):
        raise ValueError(f"{file} holds {len(complete)} complete rows, but summary.json counts {expected} epochs")


def epoch_curves(runs: pd.DataFrame) -> pd.DataFrame:
    """Per-epoch metrics of `runs` (their epochs.csv), with the run's model, optimizer, fold and status beside them."""
    frames = []
    for run in runs.itertuples():
        path = Path(run.path) / "epochs.csv"
        if path.exists():
            frame = pd.read_csv(path)
            frame["model"], frame["optimizer"], frame["fold"], frame["path"], frame["status"] = (
                run.model,
                run.optimizer,
                run.fold,
                run.path,
                run.status,
            )
            frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def layer_rates(path: str | Path) -> pd.DataFrame | None:
    """A run's layer_lrs.csv (step, one column per layer), or None."""
    file = Path(path) / "layer_lrs.csv"
    return pd.read_csv(file) if file.exists() else None


def ordered(values: Iterable[Any], order: Iterable[Any]) -> list[Any]:
    """`values` (distinct) in the paper's `order` first, then any others sorted."""
    values = list(dict.fromkeys(values))
    known = [v for v in order if v in values]
    return known + sorted((v for v in values if v not in known), key=str)
