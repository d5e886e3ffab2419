"""tuning.json, beside an experiment's run directories: what `llbbench tune` found, read by `tuned=true` runs,
the report and later tunings. Each entry: network, optimizer (its variant), grid, val_loss (one per rate, null
for a run that did not finish), configured, winner."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

TUNING_FILE = "tuning.json"


def optimizer_variant(optimizer: dict[str, Any], train: dict[str, Any]) -> str:
    """The optimizer as a comparison names it: its name, then `+<schedule>` for a schedule other than constant
    and `+global` for LLb-SGD with one shared rate (e.g. `sgd+cosine`, `llb+global`)."""
    label = optimizer["name"]
    if train.get("schedule", "constant") != "constant":
        label += f"+{train['schedule']}"
    if optimizer.get("groups", "layer") == "global":
        label += "+global"
    return label


def read_tuning(file: Path) -> list[dict[str, Any]]:
    """The entries of a tuning.json, each checked: `ValueError` naming the file and the first bad entry."""
    fix = "fix it, or move it away and run llbbench tune again"
    try:
        entries = json.loads(file.read_text())
    except ValueError as e:
        raise ValueError(f"{file} is not valid JSON ({e}): {fix}") from None
    if not isinstance(entries, list):
        raise ValueError(f"{file} holds a {type(entries).__name__}, not a list of entries: {fix}")
    for i, entry in enumerate(entries):
        problem = _tuning_problem(entry)
        if problem is not None:
            name = f" ({entry.get('network')} × {entry.get('optimizer')})" if isinstance(entry, dict) else ""
            raise ValueError(f"{file}: entry {i}{name}: {problem}: {fix}")
    return entries


def _tuning_problem(entry: Any) -> str | None:
    """What is wrong with one entry of tuning.json, or None."""

    def rate(value: Any) -> bool:
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0

    if not isinstance(entry, dict):
        return f"{entry!r} is not an entry (an object with network, optimizer, grid, val_loss, winner)"
    missing = [key for key in ("network", "optimizer", "grid", "val_loss", "configured") if key not in entry]
    if missing:
        return f"{', '.join(missing)} missing"
    if not isinstance(entry["grid"], list) or not all(rate(r) for r in entry["grid"]):
        return f"grid {entry['grid']!r} is not a list of positive rates"
    if not isinstance(entry["val_loss"], list) or len(entry["val_loss"]) != len(entry["grid"]):
        return f"val_loss {entry['val_loss']!r} does not give one loss (or null) per rate of the grid"
    if not rate(entry["configured"]):
        return f"configured rate {entry['configured']!r} is not a positive number"
    if entry.get("winner") is not None and not rate(entry["winner"]):
        return f"winner {entry['winner']!r} is not a positive number"
    return None


def tuned_rate(cfg: DictConfig, configured: Any = 0.0) -> float | None:
    """The winner in tuning.json for the network and optimizer of the run `cfg` (read key by key: this serves
    the resolver of `optimizer.lr` itself, which passes the rate it would give untuned as `configured`); None
    where the winner is the configured rate and the optimizer leaves its rate to its preset (`configured` None),
    so that the tuned run is the one-shot run, not the same rate written out under another run identity."""
    optimizer = {"name": cfg.optimizer.name, "groups": OmegaConf.select(cfg, "optimizer.groups", default="layer")}
    variant = optimizer_variant(optimizer, {"schedule": OmegaConf.select(cfg, "train.schedule", default="constant")})
    entry = tuned_entry(cfg.results_dir, cfg.experiment_name, cfg.model.name, variant)
    return None if configured is None and entry["winner"] == entry["configured"] else float(entry["winner"])


def tuned_entry(results_dir: str | Path, experiment: str, network: str, optimizer: str) -> dict[str, Any]:
    """The tuning.json entry of (network, optimizer), with its winner; `ValueError` naming what is missing."""
    path = Path(results_dir) / experiment / TUNING_FILE
    if not path.exists():
        raise ValueError(
            f"tuned=true needs {path}: run `llbbench tune experiment={experiment}` (with the same overrides) first"
        )
    entries = read_tuning(path)
    for entry in entries:
        if entry["network"] == network and entry["optimizer"] == optimizer and entry.get("winner") is not None:
            return entry
    raise ValueError(
        f"tuned=true: {path} has no tuned rate for {network} × {optimizer}; run `llbbench tune "
        f"experiment={experiment}` with this sweep's overrides to add it"
    )
