"""Checks before anything is launched: every run's config, its data and the results folder.

A Hydra callback, so that it runs in the main process before Hydra creates a run directory: a bad input stops a
single run with one message, and a bad input that every run of a sweep shares stops the sweep once, before any
run starts. Runs of a sweep whose own input is bad (say one out-of-range fold) are named, and the others go on;
those runs then fail, and the sweep exits non-zero at its end.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from .. import config
from ..config import error_line, launchers
from .sweeps import sweep_points

PREFIX = "llbbench run: error:"


def problem(cfg: DictConfig) -> str | None:
    """Why the run `cfg` cannot start (one line), or None when it can."""
    from .. import data
    from ..backend.device import resolve_device
    from ..backend.distributed import check_sync_bn

    try:
        typed = config.check(cfg)
        check_sync_bn(typed.train.sync_bn, resolve_device(typed.device))
        data.check_fingerprint(OmegaConf.to_container(typed.dataset, enum_to_str=True))
        check_writable(Path(typed.results_dir), "results_dir")
    except (ValueError, OSError) as e:
        return str(e)
    return None


def check_writable(folder: Path, option: str) -> None:
    """`folder` is (or can be made) a folder this process can write in; else `ValueError` naming `option`."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise ValueError(f"{option}={folder} is not a folder this user can write in ({e.strerror or e})") from None


def launcher_problem(launcher: DictConfig) -> str | None:
    """Why the sweep's launcher cannot start (one line), or None: joblib's `n_jobs`, and Slurm where there is none."""
    which = launchers.kind(launcher)
    if which == "joblib" and launcher.get("n_jobs") == 0:
        return ("hydra.launcher.n_jobs=0 runs nothing: give the number of runs at once (e.g. 2), or -1 for one per "
                "core")  # fmt: skip
    if which == "slurm":
        missing = [tool for tool in ("sbatch", "srun") if shutil.which(tool) is None]
        if missing:
            verb = "is" if len(missing) == 1 else "are"
            return (f"hydra/launcher=slurm needs Slurm, but {' and '.join(missing)} {verb} not on PATH here: run the "
                    "sweep on a Slurm login node, or choose hydra/launcher=joblib (this machine's cores)")  # fmt: skip
    return None


def _stop(messages: list[str]) -> None:
    for message in messages:
        print(f"{PREFIX} {message}", file=sys.stderr)
    sys.stdout.flush()
    sys.exit(2)


class Preflight(Callback):
    """Hydra callback: checks a run, or every run of a sweep, before Hydra launches anything."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        found = problem(config)
        if found is not None:
            _stop([found])

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from hydra import compose
        from hydra.errors import HydraException

        launcher = launcher_problem(config.hydra.launcher)
        if launcher is not None:
            _stop([launcher])
        points = sweep_points(config)
        if not points:
            return
        searched = list(config.hydra.get("searchpath") or [])  # the user's config folders, for the points too
        extra = [f"hydra.searchpath=[{','.join(searched)}]"] if searched else []
        problems: dict[str, list[str]] = defaultdict(list)
        uncomposable: dict[str, list[str]] = defaultdict(list)  # Hydra's launcher would stop the whole sweep on these
        for point in points:
            shown = " ".join(point) or "(no overrides)"
            try:
                found = problem(compose(kwargs.get("config_name") or "config", overrides=[*point, *extra]))
            except (HydraException, ValueError) as e:
                uncomposable[error_line(e, point)].append(shown)
                continue
            if found is not None:
                problems[found].append(shown)
        if uncomposable:  # nothing runs: a sweep value names no config (e.g. optimizer=sgd,nosuch)
            _stop([f"{message} (in {_count(runs, len(points))}; nothing of the sweep was run)"
                   for message, runs in uncomposable.items()])  # fmt: skip
        bad = sum(len(runs) for runs in problems.values())
        if bad == len(points):  # nothing could run: say why once per distinct reason
            _stop([f"{message} (in {_count(runs, len(points))})" for message, runs in problems.items()])
        for message, runs in problems.items():
            print(
                f"llbbench run: warning: {_count(runs, len(points))} will fail: {message}; the others go on "
                f"(e.g. {runs[0]})",
                file=sys.stderr,
                flush=True,
            )


def _count(runs: list[str], total: int) -> str:
    return f"all {total} runs of the sweep" if len(runs) == total else f"{len(runs)} of the sweep's {total} runs"
