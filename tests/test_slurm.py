"""The Slurm launcher for real (`make test-slurm` starts a one-node cluster first); left out of `make test`."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.conftest import llbbench

pytestmark = pytest.mark.slow


@pytest.mark.skipif(shutil.which("sbatch") is None, reason="needs a Slurm cluster (make test-slurm starts one)")
def test_a_sweep_runs_as_slurm_jobs_and_a_second_start_trains_nothing(cifar_root, tmp_path):
    args = [
        "run", "-m", "optimizer=sgd,adam", "hydra/launcher=slurm", "hydra.launcher.gpus_per_node=0",
        "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=2", "hydra.launcher.timeout_min=10",
        "device=cpu", "model.width=0.25", "train.epochs=1", f"results_dir={tmp_path}",
    ]  # fmt: skip
    first = llbbench(*args, data=cifar_root, timeout=600)
    assert first.returncode == 0, first.stderr
    assert "sweep done: 2 of 2 runs: 2 completed" in first.stdout + first.stderr
    assert list(tmp_path.glob("runs/.submitit/*"))  # the jobs went through Slurm
    assert {json.loads(p.read_text())["status"] for p in tmp_path.glob("runs/*/summary.json")} == {"completed"}
    again = llbbench(*args, data=cifar_root, timeout=600)
    assert "sweep done: 2 of 2 runs: 0 completed, 2 skipped" in again.stdout + again.stderr
