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


@pytest.mark.skipif(shutil.which("sbatch") is None, reason="needs a Slurm cluster (make test-slurm starts one)")
def test_a_run_of_two_slurm_tasks_is_one_distributed_run_with_the_weights_of_one_process(cifar_root, tmp_path):
    import torch

    run = ["model=mlp", "model.width=0.25", "optimizer=sgd", "device=cpu", "train.epochs=1", "train.batch_size=32",
           "keep_checkpoint=true"]  # fmt: skip
    slurm = ["run", "-m", *run, "hydra/launcher=slurm", "hydra.launcher.tasks_per_node=2",
             "hydra.launcher.gpus_per_node=0", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=4",
             "hydra.launcher.timeout_min=10", f"results_dir={tmp_path / 'slurm'}"]  # fmt: skip
    first = llbbench(*slurm, data=cifar_root, timeout=600)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "sweep done: 1 of 1 runs: 1 completed" in first.stdout + first.stderr  # one report, from rank 0
    (shared,) = [p.parent for p in tmp_path.glob("slurm/runs/*/summary.json")]
    assert "world_size: 2" in (shared / "config.yaml").read_text()
    alone = llbbench("run", *run, f"results_dir={tmp_path / 'alone'}", data=cifar_root)
    assert alone.returncode == 0, alone.stderr
    (single,) = [p.parent for p in tmp_path.glob("alone/runs/*/summary.json")]
    a, b = (torch.load(d / "checkpoint.pt", weights_only=True)["model"] for d in (single, shared))
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5
    again = llbbench(*slurm, data=cifar_root, timeout=600)
    assert "sweep done: 1 of 1 runs: 0 completed, 1 skipped" in again.stdout + again.stderr


@pytest.mark.skipif(shutil.which("sbatch") is None, reason="needs a Slurm cluster (make test-slurm starts one)")
def test_a_slurm_job_imports_your_optimizer_from_your_config_folder(cifar_root, tmp_path):
    """--config-dir examples/lion: the job (another process, started by Slurm) imports lion_optimizer.Lion."""
    from tests.test_plugins import EXAMPLES

    args = ["run", "-m", "optimizer=lion,sgd", "hydra/launcher=slurm", "hydra.launcher.gpus_per_node=0",
            "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=2", "hydra.launcher.timeout_min=10",
            "device=cpu", "model=smallcnn", "train.epochs=1", f"results_dir={tmp_path}",
            "--config-dir", str(EXAMPLES / "lion")]  # fmt: skip
    done = llbbench(*args, data=cifar_root, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "sweep done: 2 of 2 runs: 2 completed" in done.stdout + done.stderr
    (env,) = [json.loads(p.read_text()) for p in tmp_path.glob("runs/smallcnn-lion-*/env.json")]
    assert env["optimizer_code"]["class"] == "lion_optimizer.Lion"
