"""Argument checks shared by the optimizers: one clear `ValueError` where a bad value enters."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def check_values(owner: str, checks: Iterable[tuple[str, Any, bool, str]]) -> None:
    """Raise for the first (name, value, ok, rule) whose `ok` is false: "OWNER: name=value must be rule"."""
    for name, value, ok, rule in checks:
        if not ok:
            raise ValueError(f"{owner}: {name}={value!r} must be {rule}")
