"""TensorBoard and MLflow receive what the run files hold, read back from real event files and a real MLflow store;
a killed and resumed run is one unbroken curve in each; a missing package or a broken store is one line."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.plugin_event_multiplexer import EventMultiplexer

from llbbench.records.trackers import wandb_history
from tests.conftest import llbbench, llbbench_background
from tests.test_runs import PER_EPOCH, RESUME, run_dir_of, wait_for_step

SMALL = ["device=cpu", "model=smallcnn", "train.epochs=2", "train.batch_size=16", "train.log_every=2",
         "dataset.subset=300",
         "dataset.test_subset=100", "cv.folds=2"]  # fmt: skip
BOTH = "logger=[tensorboard,mlflow]"
ALL = "logger=[tensorboard,mlflow,wandb]"


def rows(run: Path, table: str) -> list[dict[str, str]]:
    return list(csv.DictReader((run / table).open()))


def scalars(run: Path, tag: str) -> list[tuple[int, float]]:
    events = EventAccumulator(str(run / "tb"), size_guidance={"scalars": 0})
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars(tag)]


def same(got: list[tuple[int, float]], expected: list[tuple[int, float]]) -> bool:
    """The same steps, in order, once each, and the same values (float32 in an event file)."""
    return [s for s, _ in got] == [s for s, _ in expected] and [v for _, v in got] == pytest.approx(
        [v for _, v in expected], rel=1e-6
    )


def wandb_rows(results: Path, run_id: str) -> tuple[list[dict], dict]:
    """The history rows of the offline W&B run `run_id` (all its files), and its config, read from the files."""
    from llbbench.records.trackers import wandb_records

    config = {}
    for path in sorted(results.glob(f"wandb/offline-run-*-{run_id}/run-{run_id}.wandb")):
        for record in wandb_records(path):
            kind = record.WhichOneof("record_type")
            if kind in ("config", "run"):  # the config: in the run record, then in updates
                update = record.config.update if kind == "config" else record.run.config.update
                config.update({i.key: json.loads(i.value_json) for i in update})
    return list(wandb_history(results, run_id)), config


def mlflow_runs(results: Path, experiment: str) -> list:
    client = MlflowClient(f"sqlite:///{results / 'mlflow.db'}")
    return client, client.search_runs([client.get_experiment_by_name(experiment).experiment_id])


def history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def test_a_sweep_logs_every_run_to_tensorboard_and_mlflow(cifar_root, tmp_path):
    done = llbbench("run", "-m", "optimizer=sgd,llb", BOTH, *SMALL, f"results_dir={tmp_path}",
                    "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", data=cifar_root)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    runs = sorted(p.parent for p in tmp_path.glob("runs/*/summary.json"))
    assert len(runs) == 2
    multiplexer = EventMultiplexer().AddRunsFromDirectory(str(tmp_path))  # what `tensorboard --logdir` lists
    multiplexer.Reload()
    assert sorted(Path(tmp_path, r).parent.name for r in multiplexer.Runs()) == [r.name for r in runs]
    client, tracked = mlflow_runs(tmp_path, "runs")
    by_id = {r.data.tags["run_id"]: r for r in tracked}
    assert sorted(by_id) == [r.name for r in runs]  # one MLflow run per run
    for run in runs:
        steps, epochs = rows(run, "steps.csv"), rows(run, "epochs.csv")
        expected = [(int(r["step"]), float(r["loss"])) for r in steps]
        assert same(scalars(run, "train/loss"), expected) and len(expected) >= 5
        assert [v for _, v in scalars(run, "epoch/val_loss")] == pytest.approx([float(r["val_loss"]) for r in epochs])
        tracked_run = by_id[run.name]
        assert tracked_run.info.status == "FINISHED" and tracked_run.data.tags["status"] == "completed"
        assert tracked_run.data.params["optimizer.name"] == tracked_run.data.tags["optimizer"]
        assert tracked_run.data.tags["network"] == "smallcnn" and tracked_run.data.tags["fold"] == "0"
        assert history(client, tracked_run.info.run_id, "train/loss") == expected
        assert history(client, tracked_run.info.run_id, "epoch/test_loss") == [
            (int(r["step"]), float(r["test_loss"])) for r in epochs
        ]
    llb = next(r for r in runs if "-llb-" in r.name)
    layer = next(k for k in rows(llb, "layer_lrs.csv")[0] if k != "step")
    assert [s for s, _ in scalars(llb, f"layer_lr/{layer}")] == [int(r["step"]) for r in rows(llb, "layer_lrs.csv")]
    # the loggers are not part of the identity: without them the same runs are found done
    again = llbbench("run", "-m", "optimizer=sgd,llb", *SMALL, f"results_dir={tmp_path}", data=cifar_root)
    assert "0 completed, 2 skipped" in again.stdout + again.stderr


def test_a_killed_and_resumed_run_is_one_curve_in_each_logger(cifar_root, tmp_path):
    args = ["run", *RESUME, "checkpoint_minutes=0.003", ALL, f"results_dir={tmp_path}"]  # rows past the checkpoint
    process = llbbench_background(*args, data=cifar_root)
    try:
        wait_for_step(tmp_path, epoch=2, step=PER_EPOCH + 8, process=process)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    run = run_dir_of(tmp_path)
    first_id = json.loads((run / "trackers.json").read_text())["mlflow"]["run_id"]
    resumed = llbbench(*args, data=cifar_root)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((run / "summary.json").read_text())["resumed_at_steps"]
    steps = [(int(r["step"]), float(r["loss"])) for r in rows(run, "steps.csv")]
    assert [s for s, _ in steps] == list(range(1, 3 * PER_EPOCH + 1))  # log_every=1: every step, once
    assert same(scalars(run, "train/loss"), steps)  # no gap, no duplicate
    client, tracked = mlflow_runs(tmp_path, "runs")
    assert [r.info.run_id for r in tracked] == [first_id]  # the same MLflow run, continued
    assert history(client, first_id, "train/loss") == steps
    assert [s for s, _ in history(client, first_id, "epoch/train_loss")] == [PER_EPOCH, 2 * PER_EPOCH, 3 * PER_EPOCH]
    wandb_id = json.loads((run / "trackers.json").read_text())["wandb"]["id"]
    rows_sent, _ = wandb_rows(tmp_path, wandb_id)
    assert len(list(tmp_path.glob(f"wandb/offline-run-*-{wandb_id}"))) == 2  # the killed run's files, then the resume's
    assert same([(r["_step"], r["train/loss"]) for r in rows_sent if "train/loss" in r], steps)


def test_wandb_offline_run_files_hold_the_run(cifar_root, tmp_path):
    done = llbbench("run", "logger=[wandb]", "logger.wandb.project=mine", *SMALL, f"results_dir={tmp_path}",
                    data=cifar_root)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    run = run_dir_of(tmp_path)
    state = json.loads((run / "trackers.json").read_text())["wandb"]
    assert state["mode"] == "offline" and state["project"] == "mine"
    sent, config = wandb_rows(tmp_path, state["id"])
    steps, epochs = rows(run, "steps.csv"), rows(run, "epochs.csv")
    assert same([(r["_step"], r["train/loss"]) for r in sent if "train/loss" in r],
                [(int(r["step"]), float(r["loss"])) for r in steps])  # fmt: skip
    assert [r["epoch/val_loss"] for r in sent if "epoch/val_loss" in r] == pytest.approx(
        [float(r["val_loss"]) for r in epochs]
    )
    assert config["run_id"] == run.name and config["optimizer.name"] == "llb"


def test_a_logger_whose_package_is_missing_stops_the_run_before_training_in_one_line(cifar_root, tmp_path):
    code = ("import sys\nsys.modules['mlflow'] = None  # as if MLflow were not installed\n"
            "from llbbench.cli import main\nsys.exit(main(sys.argv[1:]))\n")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code, "run", "logger=[mlflow]", *SMALL, f"results_dir={tmp_path}",
                           f"dataset.root={cifar_root}"], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip() == ("llbbench run: error: logger=mlflow needs the mlflow package: pip install "
                                   "'llbbench[mlflow]'")  # fmt: skip
    assert not (tmp_path / "runs").exists()  # nothing was trained
    plain = subprocess.run([sys.executable, "-c", code, "run", *SMALL, f"results_dir={tmp_path}",
                            f"dataset.root={cifar_root}"], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert plain.returncode == 0, plain.stderr  # without a logger, MLflow is never needed


def test_a_logger_that_fails_is_named_once_and_the_run_goes_on(cifar_root, tmp_path):
    broken = f"sqlite:///{tmp_path / 'no' / 'such' / 'folder' / 'mlflow.db'}"
    done = llbbench("run", BOTH, f"logger.mlflow.tracking_uri={broken}", *SMALL, f"results_dir={tmp_path}",
                    data=cifar_root)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    warned = [line for line in (done.stdout + done.stderr).splitlines() if "logger mlflow" in line]
    assert len(warned) == 1 and "the run goes on with its files" in warned[0]
    run = run_dir_of(tmp_path)
    assert json.loads((run / "summary.json").read_text())["status"] == "completed"
    assert scalars(run, "train/loss")  # TensorBoard went on
