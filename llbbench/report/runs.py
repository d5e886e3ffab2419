"""Run directories read back into pandas: one row per run, and each run's curves.

Only the files a run writes are read (config.yaml, summary.json, epochs.csv, layer_lrs.csv); nothing of the
training code is imported.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from ..paper import OPTIMIZER_NAMES
from ..records.run import CONFIG, EPOCHS, LAYER_LRS, STEPS, SUMMARY, blew_up, identity
from ..records.tuning import TUNING_FILE, optimizer_variant, read_tuning

# how a run's rate came about: the configured rate (the paper's protocol), a tuned winner, both at once, or
# another rate of a tuning grid (a tuning run only: it enters no table but Table 1's tuning grids)
ONE_SHOT, TUNED, BOTH, TUNING = "one-shot", "tuned", "both", "tuning"
SKIP_FOLDERS = {".submitit", ".sweeps", ".hydra", "report"}
FINISHED = ("completed", "stopped")  # statuses whose final metrics count (a stopped run met its stop rule)
CLASSES = {"cifar10": 10, "imagenet": 1000}  # for runs that do not record their number of classes


# the `label` of each optimizer from outside the paper, from its runs' config.yaml (`load_runs` fills it)
ADDED_LABELS: dict[str, str] = {}


def optimizer_label(variant: str) -> str:
    """A variant as a table shows it: `sgd+cosine` → `SGD (cosine)`; an added optimizer by its config's label."""
    name, *extras = variant.split("+")
    shown = OPTIMIZER_NAMES.get(name) or ADDED_LABELS.get(name) or name
    return shown + "".join(f" ({extra})" for extra in extras)


def added_optimizers(runs: pd.DataFrame) -> list[str]:
    """The optimizers of `runs` (their base names, controls aside) that are not the paper's, sorted."""
    names = {str(v).split("+")[0] for v in runs["optimizer"]} if len(runs) else set()
    return sorted(names - set(OPTIMIZER_NAMES))


def find_runs(roots: Iterable[str | Path]) -> list[Path]:
    """Every run directory (one holding summary.json) below `roots`, sorted."""
    found = set()
    for root in map(Path, roots):
        if not root.exists():
            raise FileNotFoundError(f"no such results folder: {root}")
        for summary in root.rglob(SUMMARY):
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
    labels = {row.pop("optimizer_name"): row.pop("label") for row in rows}
    ADDED_LABELS.clear()  # the labels of this report's runs, not of an earlier one's
    ADDED_LABELS.update({k: str(v or k) for k, v in labels.items() if k not in OPTIMIZER_NAMES})
    runs = pd.DataFrame(rows)
    tunings = load_tunings(runs)
    entries = [tunings.get(str(Path(row.path).parent), []) for row in runs.itertuples()]
    runs["protocol"] = [protocol(row, of) for row, of in zip(runs.itertuples(), entries, strict=True)]
    written = [_configured_written_out(row, of) for row, of in zip(runs.itertuples(), entries, strict=True)]
    return _one_shot_once(runs, pd.Series(written, index=runs.index, dtype=bool)), unreadable


def _one_shot_once(runs: pd.DataFrame, written_out: pd.Series) -> pd.DataFrame:
    """Where an experiment holds, for one network × optimizer, runs at the rate left to the optimizer's preset (lr
    null) and runs at the configured rate written out (e.g. tuned runs of a winner at the configured rate, made
    before `tuned=true` gave lr null there: the same rate under another run identity), the written-out ones are
    left out of the tables (counted as tuning runs): else one cell would count both sets, twice its folds.
    `written_out`: which runs are at their tuning entry's configured rate, written out."""
    folder = runs["path"].map(lambda p: str(Path(p).parent))
    preset = runs["lr"].isna() & runs["protocol"].isin((ONE_SHOT, BOTH))
    with_preset = set(zip(folder[preset], runs["model"][preset], runs["optimizer"][preset], strict=True))
    keys = zip(folder, runs["model"], runs["optimizer"], strict=True)
    same_cell = pd.Series([key in with_preset for key in keys], index=runs.index)
    runs.loc[same_cell & written_out, "protocol"] = TUNING
    return runs


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
            found[folder] = read_tuning(file)
    return found


def _entry(run: Any, entries: list[dict[str, Any]]) -> dict[str, Any] | None:
    """`run`'s tuning entry (its network and optimizer), if its experiment has one."""
    return next((e for e in entries if e["network"] == run.model and e["optimizer"] == run.optimizer), None)


def _lr(run: Any) -> float | None:
    """`run`'s rate as written in its config; None (NaN in the table) where it was left to the preset."""
    return None if run.lr is None or pd.isna(run.lr) else float(run.lr)


def _same(lr: float | None, rate: float | None) -> bool:
    """Whether a written-out rate `lr` is `rate` (neither None)."""
    return rate is not None and lr is not None and math.isclose(lr, rate, rel_tol=1e-9)


def _configured_written_out(run: Any, entries: list[dict[str, Any]]) -> bool:
    """Whether `run`'s rate is written out and is its tuning entry's configured rate."""
    entry = _entry(run, entries)
    return entry is not None and _same(_lr(run), entry["configured"])


def protocol(run: Any, entries: list[dict[str, Any]]) -> str:
    """How `run`'s rate came about, from its experiment's tuning entries (ONE_SHOT without any)."""
    entry = _entry(run, entries)
    if entry is None:
        return ONE_SHOT

    lr = _lr(run)
    configured = _same(lr, entry["configured"]) or lr is None  # the preset's rate is the configured one
    # (a winner at the configured rate of an optimizer that leaves it to its preset: its tuned runs are lr null)
    tuned = _same(lr, entry.get("winner")) or (lr is None and entry.get("winner") == entry["configured"])
    return BOTH if configured and tuned else TUNED if tuned else ONE_SHOT if configured else TUNING


# the optimizer's values a run's row shows (max_lr_ratio too: LLb-SGD's runs made before it was an option had 1)
OPTIMIZER_COLUMNS = ("preset", "lr", "weight_decay", "threshold", "direction", "conv_norm", "loss_ema", "xi")


def _row(path: Path) -> dict[str, Any]:
    config = yaml.safe_load((path / CONFIG).read_text())
    summary = json.loads((path / SUMMARY).read_text())
    _check_tables(path, summary, config)
    final = summary.get("final") or {}
    optimizer, model, dataset, train = config["optimizer"], config["model"], config["dataset"], config["train"]
    fold = config.get("fold")
    classes = summary.get("num_classes") or CLASSES.get(dataset["name"])
    # the blow-up rule, also for runs recorded before it (their summary.json says completed or stopped)
    blown = blew_up(final.get("train_loss"), classes) is not None
    status = "diverged" if blown else summary["status"]
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
        "optimizer_name": optimizer["name"],
        "label": optimizer.get("label"),  # (these two are taken out into ADDED_LABELS)
        **{key: optimizer.get(key) for key in OPTIMIZER_COLUMNS},
        "max_lr_ratio": optimizer.get("max_lr_ratio", 1.0 if optimizer.get("name") == "llb" else None),
        "batch_size": train["batch_size"],
        "epoch_budget": train["epochs"],
        "init": config["init"]["name"],
        "architecture": architecture(model),
        "fold": None if fold is None or str(fold).lower() == "none" else int(fold),
        "folds": config.get("cv", {}).get("folds"),
        "seed": config.get("seed"),
        "status": status,
        "blew_up": blown,
        "recorded_status": summary["status"],
        "classes": summary.get("num_classes"),
        "steps": summary.get("steps"),
        "epochs": summary.get("epochs"),
        "seconds": summary.get("seconds"),
        **{key: summary.get(key) for key in ("started", "setup_seconds", "ended")},  # runs since they were recorded
        "train_loss": final.get("train_loss"),
        "test_loss": final.get("test_loss"),
        "test_acc": final.get("test_acc"),
        "val_loss": final.get("val_loss"),
        "setting": _flat(_but_the_fold(identity(config))),
    }


def _but_the_fold(identity: dict[str, Any]) -> dict[str, Any]:
    """A run's identity without what differs from fold to fold: the fold, its seed (`run_seed`) and an optimizer
    seed that follows it (ESGD's `${run_seed}`)."""
    kept = {k: v for k, v in identity.items() if k not in ("fold", "run_seed")}
    optimizer = kept.get("optimizer")
    if isinstance(optimizer, dict) and "run_seed" in identity and optimizer.get("seed") == identity["run_seed"]:
        kept["optimizer"] = {k: v for k, v in optimizer.items() if k != "seed"}
    return kept


def _flat(values: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """A nested dict as dotted keys and the JSON of each value: `{"train.epochs": "8", …}`."""
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = json.dumps(value, sort_keys=True)
    return flat


# What the runs of one network may differ in within a table or figure beside the optimizer and the fold (what
# the group varies), and what makes one of its cells; any other difference splits the group by setting.
OPTIMIZER_KEYS = ("optimizer.", "train.schedule")  # an optimizer, its variants (sgd+cosine) and their values
VARIED = {
    "table2": OPTIMIZER_KEYS,
    "table3": (*OPTIMIZER_KEYS, "train.batch_size", "train.epochs"),  # each batch size its own budget (small scale)
    "table4": (*OPTIMIZER_KEYS, "init."),
    "fig7": OPTIMIZER_KEYS,
    "ablation": OPTIMIZER_KEYS,
}
CELLS = {
    "table2": ["optimizer"],
    "table3": ["optimizer", "batch_size"],
    "table4": ["optimizer", "init"],
    "fig7": ["optimizer", "lr"],
    "ablation": ["optimizer", "direction", "conv_norm", "loss_ema", "max_lr_ratio"],
}


def by_setting(runs: pd.DataFrame, group: str) -> list[tuple[str, pd.DataFrame]]:
    """The runs of table or figure `group`, split so that runs which differ in anything but what the group varies
    never share a row, and runs which differ in anything but the fold never share a cell: a list of (what sets the
    part apart, e.g. `train.epochs=1`, or "" when nothing does; its runs), the part with the most runs first (none
    without runs)."""
    if not len(runs):
        return []
    if "setting" not in runs:
        return [("", runs)]
    varied, cell = VARIED.get(group, OPTIMIZER_KEYS), CELLS.get(group, ["optimizer"])
    differing: set[str] = set()
    for _, network in runs.groupby("model"):
        differing |= {k for k in _differing(network["setting"]) if not k.startswith(varied)}
        for _, of_cell in network.groupby(cell, dropna=False):
            differing |= _differing(of_cell["setting"])
    if not differing:
        return [("", runs)]
    keys = sorted(differing)
    labels = runs["setting"].map(lambda flat: ", ".join(f"{k}={flat.get(k, 'null')}" for k in keys))
    parts = [(label, runs[labels == label]) for label in labels.unique()]
    return sorted(parts, key=lambda part: (-len(part[1]), part[0]))


def main_setting(runs: pd.DataFrame, group: str) -> pd.DataFrame:
    """The runs of `group`'s part with the most runs (`by_setting`): what its claims and figures read."""
    parts = by_setting(runs, group)
    return parts[0][1] if parts else runs


def _differing(settings: pd.Series) -> set[str]:
    """The keys whose values are not the same in every one of `settings` (flat dicts)."""
    keys = {k for flat in settings for k in flat}
    return {k for k in keys if len({flat.get(k) for flat in settings}) > 1}


def architecture(model: dict[str, Any]) -> str:
    """A network's options as run, beyond its name, form and width: switches that are on and values, e.g.
    `batch_norm, dropout 0` (empty when there are none)."""
    shown = []
    for key, value in model.items():
        if key in ("name", "form", "width") or value is None or value is False:
            continue
        shown.append(key if value is True else f"{key} {value:g}" if isinstance(value, float) else f"{key} {value}")
    return ", ".join(shown)


def _check_tables(path: Path, summary: dict[str, Any], config: dict[str, Any]) -> None:
    """The run's tables hold what summary.json counts, every row complete (a cut file is not averaged):
    epochs.csv one row per epoch; steps.csv (and layer_lrs.csv) one row every `train.log_every` steps."""
    if summary.get("status") == "failed":  # an error, not a result: its tables enter nothing
        return
    epochs, steps, every = summary.get("epochs") or 0, summary.get("steps") or 0, config["train"].get("log_every")
    _check_rows(path / EPOCHS, epochs, f"{epochs} epochs")
    for name in (STEPS, LAYER_LRS) if every else ():  # (a config without log_every: not checked)
        if name == STEPS or (path / name).exists():
            _check_rows(path / name, steps // every, f"{steps} steps, a row every {every}: {steps // every} rows")


def _check_rows(file: Path, expected: int, counted: str) -> None:
    """`file` (a CSV table with a header) holds `expected` rows, each with every column, the last one ended."""
    if not file.exists():
        if expected:
            raise ValueError(f"{file} is missing, but summary.json counts {counted}")
        return
    text = file.read_text()
    rows = list(csv.reader(io.StringIO(text)))
    header, body = (rows[0], rows[1:]) if rows else ([], [])
    cut = not text.endswith("\n")  # the last row was cut mid-way (whatever fields it kept)
    complete = [row for row in (body[:-1] if cut else body) if len(row) == len(header)]
    if len(body) != expected or len(complete) != len(body):
        raise ValueError(
            f"{file} holds {len(complete)} complete rows, but summary.json counts {counted}: the file is cut or damaged"
        )


def epoch_curves(runs: pd.DataFrame) -> pd.DataFrame:
    """Per-epoch metrics of `runs` (their epochs.csv), with the run's model, optimizer, fold and status beside them."""
    frames = []
    for run in runs.itertuples():
        path = Path(run.path) / EPOCHS
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
    file = Path(path) / LAYER_LRS
    return pd.read_csv(file) if file.exists() else None


def test_over_train(runs: pd.DataFrame) -> float:
    """n_test/n_train of the runs' K-fold cross-validation, 1/(K − 1): Nadeau & Bengio's correction of the paired
    t-interval over folds whose training sets overlap (0, no correction, when K is not recorded)."""
    folds = runs["folds"].dropna() if "folds" in runs and len(runs) else pd.Series(dtype=float)
    return 1 / (int(folds.iloc[0]) - 1) if len(folds) and int(folds.iloc[0]) >= 2 else 0.0
