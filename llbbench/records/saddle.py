"""saddle.json: Fig. 8 measured by `llbbench saddle` (on a network and on the analytic saddles)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

SADDLE_FILE = "saddle.json"


def load_saddle(roots: Iterable[str | Path]) -> dict[str, Any] | None:
    """The Fig. 8 measurement (`llbbench saddle`) under `roots`, the first found; None without one."""
    for root in map(Path, roots):
        for file in sorted(root.rglob(SADDLE_FILE)):
            try:
                return json.loads(file.read_text())
            except ValueError as e:
                raise ValueError(f"{file} is unreadable ({e}); run llbbench saddle again to rewrite it") from None
    return None
