"""The valid range of a group's value, by its key (any entry of the group: the registries declare types only)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from omegaconf import ListConfig, OmegaConf

from .errors import ConfigError


@dataclass(frozen=True)
class Range:
    words: str  # what is valid, as the message says it
    holds: Callable[[float], bool]


POSITIVE = Range("a finite number above 0", lambda v: math.isfinite(v) and v > 0)
NON_NEGATIVE = Range("a finite number of at least 0", lambda v: math.isfinite(v) and v >= 0)
FINITE = Range("a finite number", math.isfinite)
FRACTION = Range("in [0, 1)", lambda v: 0 <= v < 1)
AT_LEAST_ONE = Range("at least 1", lambda v: v >= 1)
RANGES: dict[str, dict[str, Range]] = {
    "optimizer": {
        "lr": POSITIVE,
        "momentum": FRACTION,
        "betas": FRACTION,  # each of the two
        "weight_decay": NON_NEGATIVE,
        "eps": POSITIVE,
        "rho": FRACTION,
        "alpha": FRACTION,
        "initial_accumulator_value": NON_NEGATIVE,
        "lr_decay": NON_NEGATIVE,
        "damping": POSITIVE,
        "kappa_floor": POSITIVE,
        "update_every": AT_LEAST_ONE,
        "xi": NON_NEGATIVE,
        "threshold": FINITE,
        "loss_ema": FRACTION,
        "min_lr_ratio": Range("in [0, 1]", lambda v: 0 <= v <= 1),
        "max_lr_ratio": Range("a finite number of at least 1", lambda v: math.isfinite(v) and v >= 1),
    },
    "init": {"a": POSITIVE, "std": POSITIVE, "gain": POSITIVE},
    "model": {"width": POSITIVE, "dropout": FRACTION, "hidden": AT_LEAST_ONE},
    "dataset": {"mean": FINITE, "std": POSITIVE},  # each channel's
}
CHANNELS = 3  # dataset.mean and dataset.std: one value per colour channel


def check_group_ranges(group: str, values: Mapping[str, Any]) -> None:
    """Each value of `group` whose key has a range (a list: each of its items) is in it; else `ConfigError`."""
    for key, rule in RANGES[group].items():
        value = values.get(key)
        items = list(value) if isinstance(value, list | tuple | ListConfig) else [value]
        if value is None or all(
            isinstance(v, int | float) and not isinstance(v, bool) and rule.holds(v) for v in items
        ):
            continue
        which = "each value" if len(items) > 1 else "it"
        raise ConfigError(f"{group}.{key}={_plain(value)} is out of range: {which} must be {rule.words}")
    if group == "dataset":
        for key in ("mean", "std"):
            if len(values[key]) != CHANNELS:
                raise ConfigError(f"dataset.{key}={_plain(values[key])} must hold {CHANNELS} values, one per channel")


def _plain(value: Any) -> Any:
    """A list value as a message shows it: `[0.9, 1.5]`."""
    if isinstance(value, ListConfig):
        return OmegaConf.to_container(value)
    return list(value) if isinstance(value, tuple) else value
