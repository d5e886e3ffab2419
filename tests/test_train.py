"""One run end to end: the files of its run directory, falling loss, divergence, bad input."""

from __future__ import annotations

import csv
import itertools
import json
from datetime import datetime

import numpy as np
import pytest
import torch
import yaml

from llbbench import run as one_run
from llbbench.run import loop


def read_csv(path):
    with path.open() as f:
        return list(csv.DictReader(f))


def test_two_epoch_run_writes_every_file_and_the_loss_falls(make_config, tmp_path):
    cfg = make_config("optimizer=sgd", "optimizer.lr=0.05")
    summary = one_run.run(cfg, tmp_path / "run")
    run = tmp_path / "run"

    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["optimizer"]["name"] == "sgd" and config["dataset"]["root"] == cfg.dataset.root
    env = json.loads((run / "env.json").read_text())
    assert {"python", "torch", "torchvision", "device_name", "cpu_count", "git_commit", "start_time"} <= set(env)
    assert {"cuda", "cudnn", "gpu_count", "gpu_names"} <= set(env)
    assert env["device"] == "cpu" and env["gpu_count"] == len(env["gpu_names"])
    assert {"torch", "hydra-core", "numpy", "pyyaml", "pillow"} <= set(env["packages"])
    assert env["packages"]["numpy"] == np.__version__
    assert config["dataset"]["fingerprint"].startswith("cifar10-")  # what data the run used

    steps = read_csv(run / "steps.csv")
    assert list(steps[0]) == ["step", "epoch", "loss", "lr", "lr_min", "lr_max", "seconds"]
    per_epoch = -(-480 // 32)  # 4 of 5 folds of 600 images, batches of 32
    assert [int(r["step"]) for r in steps] == list(range(2, 2 * per_epoch + 1, 2))
    assert float(steps[0]["lr"]) == 0.05

    epochs = read_csv(run / "epochs.csv")
    assert [int(r["epoch"]) for r in epochs] == [1, 2]
    assert list(epochs[0]) == [
        "epoch", "step", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc",
        "seconds", "eval_seconds",
    ]  # fmt: skip
    assert float(epochs[1]["train_loss"]) < float(epochs[0]["train_loss"])
    assert float(steps[-1]["loss"]) < float(steps[0]["loss"])

    on_disk = json.loads((run / "summary.json").read_text())
    assert on_disk == summary
    assert summary["status"] == "completed"
    assert summary["steps"] == 2 * per_epoch and summary["epochs"] == 2
    assert summary["final"]["test_loss"] == pytest.approx(float(epochs[1]["test_loss"]))
    assert summary["num_params"] > 0


def test_a_run_on_one_thread_records_it_and_its_start_up(make_config, tmp_path):
    before = torch.get_num_threads()
    summary = one_run.run(make_config("optimizer=sgd", "train.threads=1", "train.epochs=1"), tmp_path / "one")
    assert yaml.safe_load((tmp_path / "one" / "config.yaml").read_text())["train"]["threads"] == 1
    assert torch.get_num_threads() == 1
    one_run.run(make_config("optimizer=sgd", "train.epochs=1"), tmp_path / "default")  # null: torch's own again
    assert torch.get_num_threads() == before == yaml.safe_load((tmp_path / "default" / "config.yaml").read_text(
    ))["train"]["threads"]  # fmt: skip
    started, ended = (datetime.fromisoformat(summary[k]) for k in ("started", "ended"))
    assert summary["setup_seconds"] > 0 and started <= ended
    assert (ended - started).total_seconds() >= summary["setup_seconds"] + summary["seconds"] - 1  # (whole seconds)


def test_same_seed_same_run(make_config, tmp_path):
    a = one_run.run(make_config("train.epochs=1"), tmp_path / "a")
    b = one_run.run(make_config("train.epochs=1"), tmp_path / "b")
    assert a["final"]["train_loss"] == b["final"]["train_loss"]
    assert a["final"]["test_loss"] == b["final"]["test_loss"]


def test_a_huge_learning_rate_is_recorded_as_diverged(make_config, tmp_path):
    cfg = make_config("optimizer=sgd", "optimizer.lr=1e12", "train.log_every=1")
    summary = one_run.run(cfg, tmp_path / "run")
    assert summary["status"] == "diverged"
    assert summary["diverged_at_step"] < 15 and summary["epochs"] == 0
    steps = read_csv(tmp_path / "run" / "steps.csv")
    assert steps[-1]["loss"] in ("nan", "inf")
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "diverged"


def test_an_error_while_training_is_recorded_as_failed(make_config, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("out of memory, say")

    monkeypatch.setattr(loop, "evaluate", broken)
    summary = one_run.run(make_config(), tmp_path / "run")
    assert summary["status"] == "failed"
    assert summary["error"]["type"] == "RuntimeError" and "out of memory" in summary["error"]["message"]
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "failed"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optimizer.name=nosuch", "unknown optimizer 'nosuch'; valid names: adadelta, adagrad, adam"),
        ("model.name=nosuch", "unknown model 'nosuch'; valid names: alexnet, googlenet, mlp, resnet152"),
        ("dataset.name=nosuch", "unknown dataset 'nosuch'; valid names: cifar10, imagefolder, imagenet"),
        ("init.name=nosuch", "unknown init 'nosuch'; valid names: default, msra"),
        ("fold=7", "fold=7 is out of range: use 0..4"),
        ("train.batch_size=0", "train.batch_size=0 must be at least 1"),
        (
            "+optimizer.momentun=0.9",
            "unknown key optimizer.momentun; did you mean optimizer.momentum? (valid keys of "
            "optimizer: name, preset, label, lr, weight_decay, momentum, dampening, nesterov, maximize, ",
        ),  # SGD's own
        ("optimizer.preset=tf2", "unknown preset 'tf2' for optimizer 'sgd'; valid presets: ['tf1', 'torch']"),
    ],
)
def test_bad_input_gets_one_clear_message(make_config, override, message):
    with pytest.raises(ValueError, match=None) as info:
        one_run.prepare(make_config("optimizer=sgd", override))
    assert message in str(info.value)


def test_missing_data_root_names_the_expected_path(make_config, tmp_path):
    cfg = make_config(f"dataset.root={tmp_path / 'empty'}", "dataset.download=false")
    with pytest.raises(FileNotFoundError) as info:
        one_run.prepare(cfg)
    assert str(tmp_path / "empty" / "cifar-10-batches-py") in str(info.value)
    assert "dataset.download=true" in str(info.value)


def test_llb_is_the_default_and_writes_layer_rates(make_config, tmp_path):
    cfg = make_config("optimizer.lr=0.2", "optimizer.xi=5.0")
    assert cfg.optimizer.name == "llb"
    summary = one_run.run(cfg, tmp_path / "run")
    assert summary["status"] == "completed"
    rows = read_csv(tmp_path / "run" / "layer_lrs.csv")
    assert list(rows[0]) == ["step", "conv1", "conv2", "conv3", "fc"]
    steps = read_csv(tmp_path / "run" / "steps.csv")
    assert [r["step"] for r in rows] == [r["step"] for r in steps]
    rates = [[float(v) for k, v in row.items() if k != "step"] for row in rows]
    assert all(0.2e-6 <= r <= 0.2 for row in rates for r in row)
    for before, after in itertools.pairwise(rates):  # the gate direction never raises a rate
        assert all(a <= b for a, b in zip(after, before, strict=True))
    assert min(rates[-1]) < 0.2  # and the rates did decay
    assert float(steps[-1]["lr_min"]) == pytest.approx(min(rates[-1]))


def test_a_path_sgd_run_records_kappas_range_per_layer(make_config, tmp_path):
    summary = one_run.run(make_config("optimizer=pathsgd", "train.epochs=1"), tmp_path / "run")
    assert summary["status"] == "completed"
    ranges = summary["optimizer_record"]["kappa_range"]
    assert set(ranges) == {"conv1.weight", "conv2.weight", "conv3.weight", "fc.weight", "fc.bias"}  # BatchNorm: none
    assert all(0 < low <= high for low, high in ranges.values())
    on_disk = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert on_disk["optimizer_record"] == summary["optimizer_record"]


def test_eval_every_evaluates_every_nth_epoch_and_always_the_last(make_config, tmp_path):
    """`train.eval_every=2` over 3 epochs: epochs 2 and 3 evaluated, epoch 1 not (NaN, no evaluation time);
    the weights are those of a run that evaluates every epoch."""
    sparse = one_run.run(make_config("train.epochs=3", "train.eval_every=2"), tmp_path / "sparse")
    dense = one_run.run(make_config("train.epochs=3"), tmp_path / "dense")
    rows = read_csv(tmp_path / "sparse" / "epochs.csv")
    assert [r["val_loss"] == "nan" for r in rows] == [True, False, False]
    assert [r["test_acc"] == "nan" for r in rows] == [True, False, False]
    assert float(rows[0]["eval_seconds"]) == 0.0 < float(rows[1]["eval_seconds"])
    assert sparse["model_sha256"] == dense["model_sha256"]
    assert sparse["final"]["test_loss"] == dense["final"]["test_loss"]


def test_evaluate_sums_on_the_batches_device_not_the_splits(make_config):
    """An image folder keeps its labels on the CPU and yields batches on the GPU: the sums must follow the batches.
    Here the split's labels stand on PyTorch's `meta` device while its batches are on the CPU."""
    import torch

    setup = one_run.prepare(make_config("fold=0"))
    split = setup.data.val
    expected = one_run.evaluate(setup.model, split, 64)

    class Elsewhere:
        labels = split.labels.to("meta")

        def __len__(self):
            return len(split)

        def batches(self, batch_size):
            return split.batches(batch_size)

    assert one_run.evaluate(setup.model, Elsewhere(), 64) == expected
    assert torch.isfinite(torch.tensor(expected)).all()


def test_a_compiled_run_trains_the_same_network_under_its_own_identity(cifar_root, tmp_path):
    """train.compile=true: torch.compile of the training steps (here on the CPU): the same losses up to rounding,
    a run id of its own; eager runs keep theirs (compile=false is left out of the identity)."""
    from tests.conftest import llbbench

    base = ["model=mlp", "optimizer=sgd", "device=cpu", "train.epochs=1", "train.batch_size=32", "dataset.subset=200",
            "cv.folds=2"]  # fmt: skip
    eager = llbbench("run", *base, f"results_dir={tmp_path / 'eager'}", data=cifar_root)
    compiled = llbbench("run", *base, "train.compile=true", f"results_dir={tmp_path / 'compiled'}", data=cifar_root,
                        timeout=600)  # fmt: skip
    assert eager.returncode == 0 and compiled.returncode == 0, compiled.stderr[-3000:]
    (a,), (b,) = (list((tmp_path / name / "runs").iterdir()) for name in ("eager", "compiled"))
    assert a.name != b.name
    finals = [json.loads((d / "summary.json").read_text())["final"] for d in (a, b)]
    assert finals[1]["train_loss"] == pytest.approx(finals[0]["train_loss"], rel=1e-4)
    same = llbbench("run", *base, "train.compile=false", f"results_dir={tmp_path / 'eager'}", data=cifar_root)
    assert "already done" in same.stdout + same.stderr  # compile=false is the eager run's identity


def test_compile_refuses_an_optimizer_that_needs_double_backward(make_config):
    from llbbench import config

    with pytest.raises(config.ConfigError, match=r"train\.compile=true cannot train optimizer=esgd"):
        config.check(make_config("optimizer=esgd", "train.compile=true"))
