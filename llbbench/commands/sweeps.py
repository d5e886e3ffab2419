"""Sweep bookkeeping across launchers: "run i of N" as each run starts, and the counts when the sweep ends
(the sweep exits non-zero when any run failed or did not report).

The main process (a Hydra callback) counts the sweep's runs and writes `<sweep dir>/.sweeps/<token>.json`; each
run, in whatever process or machine a launcher puts it, reads the total from there and appends its status to
`<token>.jsonl` beside it. The token reaches the runs through the environment, which every launcher passes on.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from ..backend.distributed import process_rank

log = logging.getLogger("llbbench")
ENV = "LLBBENCH_SWEEP"  # internal: where the running sweep's ledger is; set by the callback, not by users
COUNTED = ("completed", "skipped", "diverged", "stopped", "failed")


# `make reproduce-medium`, in its order: each experiment at scale=medium with the overrides the target gives it
# (the Makefile's recipe is checked against this in tests/test_medium.py; scripts/estimate_gpu_hours.py costs it)
MEDIUM_PLAN = {"table2_cifar10": (), "ablation_llb": (), "ablation_ratio": (), "table3_batch": (), "table4_init": (),
               "fig7_lr": (), "table2_imagenet": ("dataset=imagenette",)}  # fmt: skip


def sweep_points(config: DictConfig, swept: list[str] | tuple[str, ...] = ()) -> list[list[str]] | None:
    """The overrides of every run the basic sweeper makes of the sweep's parameters and command-line overrides,
    and of `swept` (sweep overrides such as `optimizer=sgd,adam` that a composed config cannot hold; they win
    over the parameters of the same key, as on the command line), in the basic sweeper's order: the product of
    each key's values, a key keeping the place of its first mention and the values of its last. None for a sweep
    the basic sweeper does not make (a range or an interval: another sweeper's)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = config.hydra.sweeper.get("params") or {}
    arguments = [f"{key}={value}" for key, value in params.items()] + list(config.hydra.overrides.task) + list(swept)
    by_key: dict[str, list[str]] = {}
    for override in OverridesParser.create().parse_overrides(arguments):
        key = override.get_key_element()
        if not override.is_sweep_override():
            by_key[key] = [f"{key}={override.get_value_element_as_str()}"]
        elif override.is_discrete_sweep():
            by_key[key] = [f"{key}={value}" for value in override.sweep_string_iterator()]
        else:
            return None
    return [list(point) for point in itertools.product(*by_key.values())]


def sweep_size(config: DictConfig) -> int | None:
    """How many runs the basic sweeper makes of the sweep's parameters and command-line overrides."""
    points = sweep_points(config)
    return None if points is None else len(points)


class SweepProgress(Callback):
    """Hydra callback: announces the sweep's size and, at its end, how many runs ended in which way."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if process_rank() > 0:  # a sweep under torchrun: rank 0 keeps the ledger
            return
        folder = Path(config.hydra.sweep.dir) / ".sweeps"
        folder.mkdir(parents=True, exist_ok=True)
        ledger = folder / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
        total = sweep_size(config)
        ledger.with_suffix(".json").write_text(json.dumps({"total": total}) + "\n")
        os.environ[ENV] = str(ledger)
        log.info("sweep of %s runs into %s", total if total is not None else "?", config.hydra.sweep.dir)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        ledger = os.environ.pop(ENV, None)
        if ledger is None:
            return
        path = Path(ledger).with_suffix(".jsonl")
        lines = path.read_text().splitlines() if path.exists() else []
        counts = Counter(json.loads(line)["status"] for line in lines)
        total = json.loads(Path(ledger).with_suffix(".json").read_text())["total"]
        parts = [f"{counts.get(status, 0)} {status}" for status in COUNTED]
        missing = (total or len(lines)) - len(lines)
        if missing > 0:
            parts.append(f"{missing} did not report (killed or lost)")
        message = f"sweep done: {len(lines)} of {total if total is not None else '?'} runs: " + ", ".join(parts)
        log.info(message)
        unfinished = counts.get("failed", 0) + max(missing, 0)
        if unfinished:  # the others have finished; the exit status says that not all did
            print(f"llbbench run: {unfinished} run(s) of the sweep failed or did not report; see above", flush=True)
            raise SystemExit(1)


def announce(run_dir: Path) -> None:
    """Print "run i of N" for the run about to start, when it is part of a sweep."""
    ledger = os.environ.get(ENV)
    if ledger is None:
        return
    try:
        total = json.loads(Path(ledger).with_suffix(".json").read_text())["total"]
    except (OSError, ValueError, KeyError):
        total = None
    number = HydraConfig.get().job.num + 1
    print(f"run {number} of {total if total is not None else '?'}: {run_dir.name}", flush=True)


def report(status: str, run_dir: Path) -> None:
    """Add this run's status to the sweep's ledger (one short line, appended atomically)."""
    ledger = os.environ.get(ENV)
    if ledger is None:
        return
    line = json.dumps({"run": run_dir.name, "status": status}) + "\n"
    with Path(ledger).with_suffix(".jsonl").open("a") as f:
        f.write(line)
