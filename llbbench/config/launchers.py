"""The Hydra launchers llbbench knows, in one place: which one a `hydra.launcher` node is, and what llbbench needs of
each. A launcher is named by its node's `_target_` (Hydra's public way to name the class it instantiates); the
default launcher's node is a `BasicLauncherConf`, which OmegaConf names in its errors.

- `basic`: Hydra's default, one run after another in this process.
- `joblib` (also llbbench's `hydra/launcher=cores`): runs at once in worker processes of this machine.
- `slurm`, `submitit_local`: submitit's; a Slurm run of `nodes × tasks_per_node` tasks is one run of that many
  processes (`processes_per_run`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

KINDS = {"BasicLauncher": "basic", "JoblibLauncher": "joblib", "SlurmLauncher": "slurm",
         "LocalLauncher": "submitit_local"}  # fmt: skip
BASIC_CONF = "BasicLauncherConf"  # the default launcher's structured config, as OmegaConf's errors name it


def kind(launcher: Mapping[str, Any] | None) -> str:
    """Which launcher `launcher` (a `hydra.launcher` node) is: a key of KINDS' values, or `other` (a plug-in's)."""
    target = str((launcher or {}).get("_target_") or "")
    return KINDS.get(target.rpartition(".")[2], "other") if target else "basic"


def processes_per_run(launcher: Mapping[str, Any] | None) -> int:
    """How many processes train each run it launches: `nodes × tasks_per_node` for submitit's, else 1."""
    if launcher is None or "tasks_per_node" not in launcher:
        return 1
    return int(launcher.get("nodes") or 1) * int(launcher["tasks_per_node"] or 1)


def about_default_launcher(error: object) -> bool:
    """Whether an OmegaConf error is about a key of the default launcher's node (one it does not have)."""
    return BASIC_CONF in str(error)
