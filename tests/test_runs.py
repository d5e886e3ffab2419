"""Runs that can be trusted: identity, skip and rerun, the lock, checkpoints and exact resume after SIGKILL."""

from __future__ import annotations

import csv
import json
import multiprocessing
import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from llbbench import run as one_run
from llbbench.records.run import CHECKPOINT, RunLock, identity, run_id
from llbbench.run import execution, loop
from tests.conftest import llbbench, llbbench_background, write_cifar, write_image_folder


def test_run_id_ignores_paths_devices_and_logging_but_not_hyperparameters(make_config, cifar_root, tmp_path):
    from omegaconf import OmegaConf

    def rid(*overrides):
        return run_id(OmegaConf.to_container(make_config(*overrides), resolve=True))

    copy = shutil.copytree(cifar_root, tmp_path / "copy")  # the same files at another path
    base = rid("fold=2")
    assert base.startswith("smallcnn-llb-f2-")
    fixed = ("train.precision=fp32", "train.channels_last=false")  # what auto resolves to on the CPU
    assert rid("fold=2", "results_dir=/elsewhere", f"dataset.root={copy}", "device=cuda", *fixed) == base
    assert rid("fold=2", "device=cuda") != base  # on CUDA, auto is NHWC (and bf16 where supported): another run
    assert rid("fold=2", "train.log_every=7", "train.eval_batch_size=3", "checkpoint_minutes=1") == base
    assert rid("fold=2", "train.threads=1") == base  # recorded in config.yaml, not part of the identity
    assert rid("fold=2", "optimizer.lr=0.05") != base
    assert rid("fold=2", "seed=1") != base
    assert rid("fold=none").startswith("smallcnn-llb-fall-")


def test_a_run_of_several_processes_is_another_run_and_one_process_keeps_its_old_id(make_config, monkeypatch):
    from omegaconf import OmegaConf

    values = OmegaConf.to_container(make_config(), resolve=True)
    assert values["world_size"] == 1 and values["train"]["sync_bn"] is None
    older = {k: v for k, v in values.items() if k != "world_size"}  # a config from before distributed runs
    older["train"] = {k: v for k, v in values["train"].items() if k != "sync_bn"}
    assert run_id(older) == run_id(values) == run_id({**values, "train": {**values["train"], "sync_bn": False}})
    two = {**values, "world_size": 2}
    assert run_id(two) != run_id(values)
    assert identity(two)["world_size"] == 2 and identity(two)["train"]["sync_bn"] is False  # resolved: the CPU
    assert run_id({**two, "train": {**values["train"], "sync_bn": True}}) != run_id(two)
    monkeypatch.setenv("WORLD_SIZE", "2")  # as torchrun sets it for each of its processes
    assert make_config().world_size == 2


def test_two_different_datasets_at_one_config_get_two_run_ids(make_config, tmp_path):
    from omegaconf import OmegaConf

    other = write_cifar(tmp_path / "other", seed=1)  # other images and labels, the same layout and sizes
    images = write_image_folder(tmp_path / "images")
    more_images = write_image_folder(tmp_path / "more_images", train_per_class=7)

    def rid(*overrides):
        return run_id(OmegaConf.to_container(make_config(*overrides), resolve=True))

    assert rid() != rid(f"dataset.root={other}")
    folder = ("dataset=imagefolder", "dataset.num_workers=0")
    assert rid(*folder, f"dataset.root={images}") != rid(*folder, f"dataset.root={more_images}")
    assert make_config(f"dataset.root={other}").dataset.fingerprint.startswith("cifar10-")
    missing = make_config(f"dataset.root={tmp_path / 'none'}", "dataset.download=false")
    assert missing.dataset.fingerprint == "unavailable"


def test_identity_keeps_the_result_defining_values(make_config):
    from omegaconf import OmegaConf

    kept = identity(OmegaConf.to_container(make_config(), resolve=True))
    assert "results_dir" not in kept and "root" not in kept["dataset"] and "log_every" not in kept["train"]
    assert kept["optimizer"]["lr"] == 0.1 and kept["dataset"]["name"] == "cifar10" and kept["scale"] == "full"


def test_a_finished_run_is_skipped_and_rerun_trains_it_again(make_config, tmp_path):
    cfg = make_config("train.epochs=1")
    assert one_run.execute(cfg, tmp_path / "run") == "completed"
    summary = (tmp_path / "run" / "summary.json").read_text()
    assert not (tmp_path / "run" / CHECKPOINT).exists()  # removed on completion
    assert one_run.execute(cfg, tmp_path / "run") == "skipped"
    assert (tmp_path / "run" / "summary.json").read_text() == summary
    assert one_run.execute(make_config("train.epochs=1", "rerun=true"), tmp_path / "run") == "completed"
    rows = list(csv.DictReader((tmp_path / "run" / "epochs.csv").open()))
    assert len(rows) == 1  # started over, not appended


def test_a_failed_run_is_trained_again_on_the_next_start(make_config, tmp_path, monkeypatch):
    """`failed` is recorded but not final: once its cause is gone, the same run trains (diverged would stay)."""
    cfg = make_config("train.epochs=1")
    real_train = execution.train

    def broken(*args, **kwargs):
        raise OSError("the disk went away")

    monkeypatch.setattr(execution, "train", broken)
    assert one_run.execute(cfg, tmp_path / "run") == "failed"
    failed = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert failed["status"] == "failed" and failed["error"]["message"] == "the disk went away"
    monkeypatch.setattr(execution, "train", real_train)
    assert one_run.execute(cfg, tmp_path / "run") == "completed"
    assert one_run.execute(cfg, tmp_path / "run") == "skipped"
    assert len(list(csv.DictReader((tmp_path / "run" / "epochs.csv").open()))) == 1


def test_keep_checkpoint_keeps_it(make_config, tmp_path):
    one_run.execute(make_config("train.epochs=1", "keep_checkpoint=true"), tmp_path / "run")
    assert (tmp_path / "run" / CHECKPOINT).exists()


def _hold_lock(path: str, ready) -> None:
    lock = RunLock(path)
    assert lock.acquire()
    ready.set()
    time.sleep(60)


def test_the_lock_excludes_a_second_process_and_a_dead_holders_lock_is_taken_over(tmp_path):
    ready = multiprocessing.Event()
    holder = multiprocessing.Process(target=_hold_lock, args=(str(tmp_path), ready))
    holder.start()
    try:
        assert ready.wait(30)
        lock = RunLock(tmp_path)
        assert not lock.acquire()
        assert f'"pid": {holder.pid}' in lock.holder()
        os.kill(holder.pid, signal.SIGKILL)
        holder.join(30)
        assert lock.acquire()  # the dead process's lock is gone with it
        lock.release()
    finally:
        if holder.is_alive():
            holder.kill()


RESUME = [
    "device=cpu",
    "model=smallcnn",
    "model.width=0.5",
    "optimizer=llb",
    "train.epochs=3",
    "train.batch_size=16",
    "train.log_every=1",
    "checkpoint_minutes=0.0002",
]
PER_EPOCH = 30  # 480 training images (fold 0 of 5 of 600) in batches of 16


def run_dir_of(results: Path) -> Path:
    (path,) = (results / "runs").iterdir()
    return path


def wait_for_step(results: Path, epoch: int, step: int, process, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert process.poll() is None, "the run ended before it could be killed"
        steps = next((results / "runs").glob("*/steps.csv"), None) if (results / "runs").exists() else None
        if steps is not None:
            rows = steps.read_text().splitlines()[1:]
            if any(int(r.split(",")[1]) == epoch and int(r.split(",")[0]) >= step for r in rows):
                return
        time.sleep(0.005)
    raise AssertionError("the run did not reach the step in time")


def metrics(path: Path, name: str, drop: tuple[str, ...]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in drop} for row in csv.DictReader((path / name).open())]


def test_a_run_killed_mid_epoch_resumes_to_the_uninterrupted_result_bitwise(cifar_root, tmp_path):
    straight = llbbench("run", *RESUME, f"results_dir={tmp_path / 'a'}", data=cifar_root)
    assert straight.returncode == 0, straight.stderr

    process = llbbench_background("run", *RESUME, f"results_dir={tmp_path / 'b'}", data=cifar_root)
    try:
        wait_for_step(tmp_path / "b", epoch=2, step=PER_EPOCH + 8, process=process)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    killed = run_dir_of(tmp_path / "b")
    assert (killed / CHECKPOINT).exists() and not (killed / "summary.json").exists()

    resumed = llbbench("run", *RESUME, f"results_dir={tmp_path / 'b'}", data=cifar_root)
    assert resumed.returncode == 0, resumed.stderr
    done = run_dir_of(tmp_path / "a")
    assert killed.name == done.name  # the same identity wherever the results go
    first, second = (json.loads((d / "summary.json").read_text()) for d in (done, killed))
    (at,) = second["resumed_at_steps"]
    assert PER_EPOCH < at < 2 * PER_EPOCH  # resumed in the middle of epoch 2
    assert second["model_sha256"] == first["model_sha256"]
    assert {k: v for k, v in second["final"].items() if "seconds" not in k} == {
        k: v for k, v in first["final"].items() if "seconds" not in k
    }
    assert metrics(killed, "epochs.csv", ("seconds", "eval_seconds")) == metrics(
        done, "epochs.csv", ("seconds", "eval_seconds")
    )
    assert metrics(killed, "steps.csv", ("seconds",)) == metrics(done, "steps.csv", ("seconds",))
    assert metrics(killed, "layer_lrs.csv", ()) == metrics(done, "layer_lrs.csv", ())
    assert not (killed / CHECKPOINT).exists()


def test_an_overlapping_sweep_does_not_train_a_run_that_is_being_trained(cifar_root, tmp_path):
    args = ["run", *RESUME, "train.epochs=20", f"results_dir={tmp_path}"]
    process = llbbench_background(*args, data=cifar_root)
    try:
        wait_for_step(tmp_path, epoch=1, step=3, process=process)
        second = llbbench(*args, data=cifar_root)
        assert second.returncode == 0, second.stderr
        assert "run skipped" in second.stdout and "being trained by another process" in second.stdout
        assert process.poll() is None  # the first goes on
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    # the dead process's lock does not block: the run resumes (logging and checkpoints are not its identity)
    third = llbbench(*args, "train.log_every=100", "checkpoint_minutes=10", data=cifar_root, timeout=600)
    assert third.returncode == 0 and "run completed" in third.stdout, third.stderr
    summary = json.loads(next(tmp_path.glob("runs/*/summary.json")).read_text())
    assert summary["epochs"] == 20 and len(summary["resumed_at_steps"]) == 1


def test_the_plateau_rule_stops_a_run(make_config, tmp_path):
    # the loss cannot fall by 10 over a window of 5 steps: the rule stops the run at the second window
    summary = one_run.run(make_config("train.plateau={window:5,min_drop:10.0}"), tmp_path / "run")
    assert summary["status"] == "stopped" and summary["steps"] == 10
    # a rule that always holds never stops it
    summary = one_run.run(make_config("train.plateau={window:5,min_drop:-100.0}"), tmp_path / "other")
    assert summary["status"] == "completed" and summary["steps"] == 30


def test_a_resumed_run_stops_by_the_plateau_rule_where_an_uninterrupted_one_does(make_config, tmp_path, monkeypatch):
    # windows of 8 steps, 15 steps an epoch: the rule stops the run at step 16, in epoch 2
    overrides = ("train.plateau={window:8,min_drop:10.0}", "checkpoint_minutes=0.000001")
    straight = one_run.run(make_config(*overrides), tmp_path / "a")
    assert straight["status"] == "stopped" and straight["steps"] == 16

    def interrupted(*args, **kwargs):  # the process dies at the end of epoch 1, after a checkpoint at step 14
        raise KeyboardInterrupt

    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
        patch.setattr(loop, "evaluate", interrupted)
        one_run.run(make_config(*overrides), tmp_path / "b")
    resumed = one_run.run(make_config(*overrides), tmp_path / "b")
    assert resumed["resumed_at_steps"] == [14]  # inside a window: 6 of its 8 losses came before the interruption
    assert resumed["status"] == "stopped" and resumed["steps"] == 16
    assert resumed["model_sha256"] == straight["model_sha256"]
