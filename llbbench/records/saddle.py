"""The files of Fig. 8, written by `llbbench saddle` and read by the report: saddle.json (the network next to a
saddle: escapes, probe losses, the principal plane) and saddle_analytic.json (the trajectories of every optimizer
that needs no network on the analytic saddles of `paper.SADDLES`: `start`, `steps`, `rate`, `left_out` and
`paths`, problem → optimizer → [[x, y], …])."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

SADDLE_FILE = "saddle.json"
ANALYTIC_FILE = "saddle_analytic.json"


def load_saddle(roots: Iterable[str | Path]) -> dict[str, Any] | None:
    """The Fig. 8 measurement (`llbbench saddle`) under `roots`, the first found; None without one."""
    return _first(roots, SADDLE_FILE, "llbbench saddle")


def load_analytic(roots: Iterable[str | Path]) -> dict[str, Any] | None:
    """The analytic saddles' trajectories (`llbbench saddle`, or `llbbench saddle --analytic`) under `roots`, the
    first found; None without one."""
    return _first(roots, ANALYTIC_FILE, "llbbench saddle --analytic")


def _first(roots: Iterable[str | Path], name: str, command: str) -> dict[str, Any] | None:
    """The first file `name` under `roots`, read; `ValueError` naming it and `command` when it is unreadable."""
    for root in map(Path, roots):
        for file in sorted(root.rglob(name)):
            try:
                return json.loads(file.read_text())
            except ValueError as e:
                raise ValueError(f"{file} is unreadable ({e}); run {command} again to rewrite it") from None
    return None


def write_json(file: Path, record: dict[str, Any]) -> Path:
    """`record` as one line of JSON (no NaN), its folder made first."""
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(json.dumps(record, allow_nan=False) + "\n")
    return file
