"""A stopped sweep stops whole: no worker of it goes on training once its command is interrupted, terminated or
killed, and its runs then resume to the weights of an uninterrupted sweep."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import llbbench
from tests.test_tuning import TINY

SWEEP = ["optimizer=sgd,adam", "fold=0,1", "model=mlp", "model.width=0.25", "device=cpu", "train.epochs=40",
         "train.batch_size=32", "checkpoint_minutes=0.002", "hydra/launcher=cores", "train.threads=1"]  # fmt: skip


def session_processes(session: int) -> list[str]:
    """The live (not zombie) processes of `session`, as 'pid command'."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError):
            continue
        if int(fields[3]) == session and fields[0] != "Z":
            found.append(f"{entry.name} {command[:120]}")
    return found


def start(args: list[str], data: Path, log: Path) -> subprocess.Popen:
    """`llbbench ARGS` in a session of its own (so that everything it starts can be found), output to `log`."""
    env = {**os.environ, "LLBBENCH_DATA": str(data)}
    return subprocess.Popen([sys.executable, "-m", "llbbench.cli", *args], env=env, stdout=log.open("w"),
                            stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip


def wait_for_training(results: Path, runs: int, timeout: float = 120) -> None:
    """Until `runs` runs have written steps (workers are training)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if len(list(results.glob("**/steps.csv"))) >= runs:
            return
        time.sleep(0.05)
    raise AssertionError(f"fewer than {runs} runs started training in {timeout} s")


def assert_all_gone(process: subprocess.Popen, within: float = 10) -> float:
    """Every process of `process`'s session ends within `within` seconds; how long it took."""
    began = time.time()
    while time.time() - began < within:
        process.poll()
        if not session_processes(process.pid):
            return time.time() - began
        time.sleep(0.1)
    raise AssertionError("left running: " + "; ".join(session_processes(process.pid)))


def digests(results: Path) -> dict[str, str]:
    return {
        p.parent.name: json.loads(p.read_text())["model_sha256"] for p in sorted(results.glob("runs/*/summary.json"))
    }


@pytest.fixture(scope="module")
def uninterrupted(cifar_root, tmp_path_factory) -> dict[str, str]:
    results = tmp_path_factory.mktemp("straight")
    done = llbbench("run", "-m", *SWEEP, f"results_dir={results}", data=cifar_root)
    assert done.returncode == 0, done.stdout + done.stderr
    return digests(results)


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_stopping_a_sweep_of_the_cores_launcher_stops_its_workers_and_the_runs_resume_exactly(
    how, uninterrupted, cifar_root, tmp_path
):
    results = tmp_path / "results"
    sweep = start(["run", "-m", *SWEEP, f"results_dir={results}"], cifar_root, tmp_path / "sweep.log")
    try:
        wait_for_training(results, 2)  # both workers are training
        sweep.send_signal(how)
        assert_all_gone(sweep)
    finally:
        if session_processes(sweep.pid):
            os.killpg(sweep.pid, signal.SIGKILL)
    log = (tmp_path / "sweep.log").read_text()
    if how != signal.SIGKILL:
        assert sweep.returncode == 130, log
        assert "run the same command to go on" in log, log
    assert len(digests(results)) < len(uninterrupted), "the sweep ended before it was stopped: nothing tested"
    again = llbbench("run", "-m", *SWEEP, f"results_dir={results}", data=cifar_root)
    assert again.returncode == 0, again.stdout + again.stderr
    assert digests(results) == uninterrupted


def test_killing_tune_stops_its_sweep_and_the_sweeps_workers(cifar_root, tmp_path):
    results = tmp_path / "results"
    args = ["tune", *TINY, "train.epochs=40", "hydra/launcher=cores", "train.threads=1", f"results_dir={results}"]
    tune = start(args, cifar_root, tmp_path / "tune.log")
    try:
        wait_for_training(results, 2)
        assert len(session_processes(tune.pid)) >= 4  # tune, its sweep, the sweep's two workers (and loky's tracker)
        tune.send_signal(signal.SIGKILL)
        assert_all_gone(tune)
    finally:
        if session_processes(tune.pid):
            os.killpg(tune.pid, signal.SIGKILL)


@pytest.mark.parametrize("command", ["run", "tune", "saddle"])
def test_a_sigterm_while_a_command_still_imports_gives_one_line_and_exit_130(command, tmp_path):
    """A stop can come before a command has loaded its modules (the soak found one in `llbbench run`'s import of the
    config): it ends the command as any other stop does, one line and exit 130, not a traceback."""
    script = (
        "import importlib.abc, os, signal, sys\n"
        "class TermOnImport(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'llbbench.config':\n"
        "            os.kill(os.getpid(), signal.SIGTERM)\n"
        "        return None\n"
        "sys.meta_path.insert(0, TermOnImport())\n"
        "from llbbench.cli import main\n"
        f"sys.exit(main([{command!r}, 'results_dir={tmp_path}']))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 130, out.stderr
    assert out.stderr.strip().splitlines() == [f"llbbench {command}: stopped by signal SIGTERM: run the same command "
                                               "to go on"], out.stderr  # fmt: skip
    assert not list(tmp_path.iterdir())  # stopped before anything was written


@pytest.mark.parametrize(("signame", "said"), [("SIGTERM", "stopped by signal SIGTERM: run the same command to go on"),
                                               ("SIGINT", "interrupted: run the same command to go on")])  # fmt: skip
def test_a_stop_while_torch_loads_numpy_is_not_lost(signame, said, cifar_root, tmp_path):
    """torch's C init imports numpy and takes any error there as "no numpy": a stop raised inside it was lost, and
    the command trained on to its end (the soak found it). The stop is held over those imports and acted on."""
    script = (
        "import importlib.abc, os, signal, sys\n"
        "class StopOnImport(importlib.abc.MetaPathFinder):\n"
        "    sent = False\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'numpy' and not self.sent:  # one signal, at the first import of numpy\n"
        "            self.sent = True\n"
        f"            os.kill(os.getpid(), signal.{signame})\n"
        "        return None\n"
        "sys.meta_path.insert(0, StopOnImport())\n"
        "from llbbench.cli import main\n"
        f"sys.exit(main(['run', 'device=cpu', 'model=mlp', 'train.epochs=1', 'results_dir={tmp_path}']))\n"
    )
    env = {**os.environ, "LLBBENCH_DATA": str(cifar_root)}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 130, out.stdout + out.stderr
    assert out.stderr.strip().splitlines() == [f"llbbench run: {said}"], out.stderr
    assert not list(tmp_path.iterdir())  # stopped before anything was written
