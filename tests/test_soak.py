"""A kill-anywhere soak: a sweep of 6 runs, 2 at a time, and a `tune`, stopped at random moments many times.
Kills are SIGKILL and SIGTERM of the command, SIGKILL of its whole process group, and SIGKILL the moment a
checkpoint or summary is being written. Each time the same command is run again, and at the end every run's
weights digest, steps, epochs and summary equal an uninterrupted sweep's (timing left out). No run directory is
duplicated, nothing half-written is left, and tuning.json holds every entry.

The short form runs in `make test`; `make soak` runs the long form (at least 20 kills on the sweep and 6 on `tune`)
and writes its figures, with the machine they were measured on, to results/reliability/soak.json (docs/reliability.md
reports them). A stop at any moment, even while the command is still importing, must end it with one line: no
traceback is accepted in the command's output."""

from __future__ import annotations

import csv
import io
import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from llbbench.records.environment import environment
from tests.conftest import llbbench
from tests.test_lifetime import assert_all_gone, session_processes, start
from tests.test_tuning import TINY

SWEEP = ["optimizer=sgd,adam,nag", "fold=0,1", "model=mlp", "model.width=0.25", "device=cpu", "train.epochs=6",
         "train.batch_size=32", "train.log_every=1", "checkpoint_minutes=0.0005", "hydra/launcher=cores",
         "train.threads=1"]  # fmt: skip
TUNE = ["tune", *TINY, "train.epochs=3", "checkpoint_minutes=0.0005", "hydra/launcher=cores", "train.threads=1"]
TIMING = {"seconds", "eval_seconds", "started", "ended", "setup_seconds", "resumed_at_steps"}
HOW = ("SIGKILL", "SIGTERM", "SIGKILL group", "SIGKILL at a write")


def untimed(value):
    """`value` (nested dicts and lists) without its timing keys."""
    if isinstance(value, dict):
        return {key: untimed(item) for key, item in value.items() if key not in TIMING}
    if isinstance(value, list):
        return [untimed(item) for item in value]
    return value


def table(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV file without its timing columns."""
    return [untimed(row) for row in csv.DictReader(io.StringIO(path.read_text()))]


def records(results: Path) -> dict[str, dict]:
    """What each run recorded, timing left out: its summary (weights digest included) and its tables."""
    found = {}
    for name in run_dirs(results):
        run = results / name
        if not (run / "summary.json").exists():
            continue
        found[name] = {
            "summary": untimed(json.loads((run / "summary.json").read_text())),
            **{
                name: table(run / name)
                for name in ("steps.csv", "epochs.csv", "layer_lrs.csv")
                if (run / name).exists()
            },
        }
    return found


def tuning_entries(results: Path) -> list:
    return [untimed(json.loads(p.read_text())) for p in sorted(results.glob("**/tuning.json"))]


def _wait_for_write(results: Path, process: subprocess.Popen, timeout: float) -> bool:
    """Until a file is being written (a `.NAME.tmp` exists: a checkpoint, a summary, tuning.json), or `timeout` s;
    whether one was caught."""
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        if next(results.glob("**/.*.tmp"), None) is not None:
            return True
    return False


def soak(args: list[str], results: Path, data: Path, kills: int, log: Path, seed: int) -> dict[str, int]:
    """Run `llbbench ARGS` and stop it `kills` times at random moments (the ways of HOW in turn), each time running
    it again, then once to its end. Returns the figures: kills by way, and how many caught a write."""
    rng = random.Random(seed)
    figures = {"kills": 0, "caught writing": 0, "starts": 0, **{how: 0 for how in HOW}}
    while True:
        figures["starts"] += 1
        process = start([*args, f"results_dir={results}"], data, log)
        if figures["kills"] >= kills:
            assert process.wait(timeout=600) == 0, log.read_text()
            return figures
        how = HOW[figures["kills"] % len(HOW)]
        delay = rng.uniform(1.0, 6.0)
        try:
            if how == "SIGKILL at a write":
                figures["caught writing"] += _wait_for_write(results, process, delay + 10)
            else:
                time.sleep(delay)
            if process.poll() is None:
                if how == "SIGTERM":
                    process.send_signal(signal.SIGTERM)
                elif how == "SIGKILL":
                    process.send_signal(signal.SIGKILL)
                else:
                    os.killpg(process.pid, signal.SIGKILL)
                figures["kills"] += 1
                figures[how] += 1
            assert_all_gone(process)
            process.wait(timeout=10)
        finally:
            if session_processes(process.pid):
                os.killpg(process.pid, signal.SIGKILL)
        if process.returncode == 0:  # it ended before the kill: it is run again, and finds nothing to do
            continue
        assert process.returncode in (-signal.SIGKILL, 130), log.read_text()  # killed, or SIGTERM taken as Ctrl-C
        assert "Traceback" not in log.read_text(), log.read_text()


def run_dirs(results: Path) -> list[str]:
    """The run directories under `results`, wherever they are (a sweep's `runs/ID`, tune's `EXPERIMENT/ID`): each
    holds its lock file; the bookkeeping folders, such as `.sweeps`, do not."""
    return sorted(str(p.parent.relative_to(results)) for p in results.glob("**/.lock"))


def assert_same_as_uninterrupted(results: Path, straight: Path) -> int:
    """The killed runs in `results` recorded what the uninterrupted ones in `straight` did; how many runs."""
    killed, expected = records(results), records(straight)
    assert run_dirs(results) == run_dirs(straight) == sorted(expected)  # none duplicated, none missing or unfinished
    different = [run for run in expected if killed[run] != expected[run]]
    assert not different, f"differ from the uninterrupted runs: {different}"
    assert not list(results.glob("**/.*.tmp")), "a half-written file was left"
    return len(expected)


def run_soak(cifar_root: Path, tmp_path: Path, sweep_kills: int, tune_kills: int) -> dict:
    straight = tmp_path / "straight"
    done = llbbench("run", "-m", *SWEEP, f"results_dir={straight}", data=cifar_root)
    assert done.returncode == 0, done.stdout + done.stderr
    sweep = soak(["run", "-m", *SWEEP], tmp_path / "killed", cifar_root, sweep_kills, tmp_path / "sweep.log", 1)
    assert assert_same_as_uninterrupted(tmp_path / "killed", straight) == 6

    tuned = tmp_path / "tuned-straight"
    done = llbbench(*TUNE, f"results_dir={tuned}", data=cifar_root)
    assert done.returncode == 0, done.stdout + done.stderr
    tune = soak(TUNE, tmp_path / "tuned", cifar_root, tune_kills, tmp_path / "tune.log", 2)
    assert tuning_entries(tmp_path / "tuned") == tuning_entries(tuned) != []
    runs = assert_same_as_uninterrupted(tmp_path / "tuned", tuned)
    assert runs == sum(len(entry["grid"]) for entries in tuning_entries(tuned) for entry in entries) > 0  # every rate
    return {"sweep": {**sweep, "runs": 6}, "tune": {**tune, "runs": runs}, "differences": 0}


def test_a_sweep_and_tune_killed_a_few_times_end_as_uninterrupted(cifar_root, tmp_path):
    figures = run_soak(cifar_root, tmp_path, sweep_kills=4, tune_kills=2)
    assert figures["sweep"]["kills"] == 4 and figures["tune"]["kills"] == 2


@pytest.mark.slow
def test_soak_many_kills_end_as_uninterrupted(cifar_root, tmp_path):
    began = time.time()
    figures = run_soak(cifar_root, tmp_path, sweep_kills=24, tune_kills=8)
    assert figures["sweep"]["kills"] + figures["tune"]["kills"] >= 20
    out = os.environ.get("LLBBENCH_SOAK_REPORT")
    if out:
        where = environment(torch.device("cpu"))
        machine = {key: where[key] for key in ("device_name", "cpu_count", "platform", "python", "torch", "git_commit")}
        figures = {"command": "make soak", "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                   "minutes": round((time.time() - began) / 60, 1), "machine": machine, **figures}  # fmt: skip
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(figures, indent=2) + "\n")
