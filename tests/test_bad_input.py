"""The catalogue of bad inputs: each gets one clear line naming the value and what is valid, and nothing is lost;
nothing a file holds is ever run.

Config and data cases are checked in-process through the same check the command line runs before Hydra
creates anything (`preflight.problem`); Hydra's own errors through the function the command line says them
with (`config.error_line`); a few go through the real command line to see the exit code and that no traceback
is printed.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from llbbench import cli, config
from llbbench import run as one_run
from llbbench.commands import tune as tuning
from llbbench.commands.preflight import launcher_problem, problem
from llbbench.data import predecoded
from llbbench.records import tuning as tuning_file
from llbbench.records.run import CHECKPOINT
from llbbench.report import build_report
from tests.conftest import llbbench, write_cifar, write_image_folder
from tests.report.test_report import write_run
from tests.test_tuning import TINY, _fake_launch

SHRINK = ["device=cpu", "model.width=0.25", "train.epochs=1", "train.batch_size=64"]


class CreatesFile:
    """A payload: unpickling it calls `open(path, "w")`, so the file appears if anything in a pickle is run."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


# --- security: a file the tool reads never runs anything ---


def test_a_crafted_checkpoint_runs_nothing_is_refused_in_one_line_and_rerun_moves_it_aside(make_config, tmp_path):
    run_dir, marker = tmp_path / "run", tmp_path / "executed"
    run_dir.mkdir()
    torch.save({"identity": {}, "model": CreatesFile(marker)}, run_dir / CHECKPOINT)
    torch.load(run_dir / CHECKPOINT, weights_only=False)  # the payload is real: an unsafe load runs it
    assert marker.exists()
    marker.unlink()
    crafted = (run_dir / CHECKPOINT).read_bytes()
    with pytest.raises(ValueError) as refused:
        one_run.run(make_config("train.epochs=1"), run_dir)
    message = str(refused.value)
    assert message.startswith(f"{run_dir / CHECKPOINT} holds Python objects other than tensors and plain values")
    assert "nothing of it was run; rerun=true moves it aside (to checkpoint.pt.corrupt)" in message
    assert "\n" not in message and not marker.exists()
    assert one_run.run(make_config("train.epochs=1", "rerun=true"), run_dir)["status"] == "completed"
    assert not marker.exists() and (run_dir / f"{CHECKPOINT}.corrupt").read_bytes() == crafted


def test_a_crafted_cifar_batch_runs_nothing_and_is_refused(make_config, tmp_path):
    root, marker = write_cifar(tmp_path / "data"), tmp_path / "executed"
    path = root / "cifar-10-batches-py" / "data_batch_2"
    path.write_bytes(pickle.dumps({"data": CreatesFile(marker), "labels": [0]}, protocol=2))
    pickle.loads(path.read_bytes())  # the payload is real: a plain unpickling runs it
    assert marker.exists()
    marker.unlink()
    with pytest.raises(ValueError) as refused:
        one_run.prepare(make_config(f"dataset.root={root}"))
    assert str(refused.value).startswith(f"CIFAR-10 batch file {path} asks to build ")
    assert "which no CIFAR-10 batch holds: refused, nothing of it was run" in str(refused.value)
    assert not marker.exists()


def test_cifar_batches_pickled_as_the_official_release_names_numpy_still_load(make_config, tmp_path):
    """The official files (Python 2, NumPy 1) name `numpy.core.multiarray`; NumPy 2 pickles `numpy._core`."""
    root = write_cifar(tmp_path / "data")
    for path in (root / "cifar-10-batches-py").iterdir():
        data = path.read_bytes()
        assert b"numpy._core.multiarray" in data
        path.write_bytes(data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    setup = one_run.prepare(make_config(f"dataset.root={root}"))
    assert len(setup.data.train) + len(setup.data.val) == 600


# (case, overrides, what the message must say)
CONFIG_CASES = [
    ("rate not a number", ["optimizer.lr=abc"], "optimizer.lr='abc' is not a number"),
    ("seed not a number", ["seed=abc"], "seed='abc' is not an integer"),
    ("subset not a number", ["dataset.subset=abc"], "dataset.subset='abc' is not an integer"),
    ("fractional batch size", ["train.batch_size=1.5"], "train.batch_size=1.5 is not an integer"),
    ("drop_last not a boolean", ["train.drop_last=maybe"], "train.drop_last='maybe' is not true or false"),
    ("misspelled train key", ["+train.epoch=2"], "unknown key train.epoch; did you mean train.epochs?"),
    ("misspelled optimizer key", ["+optimizer.lrr=0.1"], "unknown key optimizer.lrr; did you mean optimizer.lr?"),
    ("misspelled dataset key", ["+dataset.subst=10"], "unknown key dataset.subst; did you mean dataset.subset?"),
    ("misspelled model key", ["+model.widht=0.5"], "unknown key model.widht; did you mean model.width?"),
    ("misspelled top-level key", ["+sed=1"], "unknown key sed; did you mean seed?"),
    ("zero epochs", ["train.epochs=0"], "train.epochs=0 must be at least 1"),
    ("negative epochs", ["train.epochs=-2"], "train.epochs=-2 must be at least 1"),
    ("zero log_every", ["train.log_every=0"], "train.log_every=0 must be at least 1"),
    ("zero plateau window", ["+train.plateau={window: 0, min_drop: 0.1}"], "train.plateau.window=0 must be at least 1"),
    ("one fold", ["cv.folds=1"], "cv.folds=1 must be at least 2"),
    ("fold out of range", ["fold=7"], "fold=7 is out of range: use 0..4 (cv.folds) or none"),
    (
        "saddle snapshots past its steps",
        ["experiment=fig8_saddle", "saddle.steps=3", "saddle.snapshot_every=5"],
        "saddle.snapshot_every=5 is more than saddle.steps=3: no weights would be kept after the start; use at most 3",
    ),
    ("unknown class selection", ["dataset=imagenet", "dataset.classes=7"], "dataset.classes=7 has no fixed class list"),
    ("unknown optimizer", ["optimizer.name=nosuch"], "unknown optimizer 'nosuch'; valid names: adadelta, adagrad"),
    ("unknown preset", ["optimizer.preset=tf2"], "unknown preset 'tf2' for optimizer 'llb'; valid presets"),
    ("unknown network", ["model.name=nosuch"], "unknown model 'nosuch'; valid names: alexnet, googlenet"),
    ("unknown init", ["init.name=nosuch"], "unknown init 'nosuch'; valid names: default, msra, normal"),
    ("unknown dataset", ["dataset.name=nosuch"], "unknown dataset 'nosuch'; valid names: cifar10, imagefolder"),
    ("unknown device", ["device=tpu"], "device='tpu' is not a device; use auto, cpu, cuda or cuda:N"),
    ("image folder without root", ["dataset=imagefolder", "dataset.root=???"], "dataset.root must be set"),
    ("fingerprint set by hand", ["dataset.fingerprint=mine"], "dataset.fingerprint='mine', found 'cifar10-"),
    ("image folder root missing", ["dataset=imagefolder", "dataset.root=/nowhere"], "image folder split 'train' not"),
    (
        "momentum of 1.5",
        ["optimizer=nag", "optimizer.momentum=1.5"],
        "optimizer.momentum=1.5 is out of range: it must be in [0, 1)",
    ),
    ("rate nan", ["optimizer.lr=nan"], "optimizer.lr=nan is out of range: it must be a finite number above 0"),
    ("rate infinite", ["optimizer=sgd", "optimizer.lr=inf"], "optimizer.lr=inf is out of range: it must be a finite"),
    (
        "negative rate",
        ["optimizer=adam", "optimizer.lr=-0.1"],
        "optimizer.lr=-0.1 is out of range: it must be a finite",
    ),
    (
        "beta of 1.5",
        ["optimizer=adam", "optimizer.betas=[0.9,1.5]"],
        "optimizer.betas=[0.9, 1.5] is out of range: each",
    ),
    ("negative weight decay", ["optimizer=adam", "optimizer.weight_decay=-1"], "optimizer.weight_decay=-1.0 is out of"),
    ("zero eps", ["optimizer=rmsprop", "optimizer.eps=0"], "optimizer.eps=0.0 is out of range: it must be a finite"),
    (
        "rho of 1",
        ["optimizer=adadelta", "optimizer.rho=1.0"],
        "optimizer.rho=1.0 is out of range: it must be in [0, 1)",
    ),
    ("negative xi", ["optimizer=llb", "optimizer.xi=-1"], "optimizer.xi=-1.0 is out of range: it must be a finite"),
    ("unknown direction", ["optimizer=llb", "optimizer.direction=up"], "optimizer=llb: LLbSGD: direction='up' is not"),
    ("zero update_every", ["optimizer=esgd", "optimizer.update_every=0"], "optimizer.update_every=0 is out of range"),
    ("negative uniform bound", ["init=uniform", "init.a=-0.05"], "init.a=-0.05 is out of range: it must be a finite"),
    ("negative normal std", ["init=normal", "init.std=-1"], "init.std=-1.0 is out of range: it must be a finite"),
    ("zero width", ["model.width=0"], "model.width=0.0 is out of range: it must be a finite number above 0"),
    ("dropout of 1", ["model=alexnet", "model.dropout=1.0"], "model.dropout=1.0 is out of range: it must be in [0, 1)"),
    ("zero std", ["dataset.std=[0,0,0]"], "dataset.std=[0.0, 0.0, 0.0] is out of range: each value must be a finite"),
    ("two-channel mean", ["dataset.mean=[0.5,0.5]"], "dataset.mean=[0.5, 0.5] must hold 3 values, one per channel"),
    ("nan schedule_k", ["train.schedule_k=nan"], "train.schedule_k=nan must be a finite number of at least 0.0"),
    (
        "sync_bn on the CPU",
        ["train.sync_bn=true"],
        "train.sync_bn=true on the CPU: PyTorch's SyncBatchNorm runs on GPUs",
    ),
    ("train given a number", ["train=5"], "train=5 is not a group of values: set its keys one by one, e.g. train."),
    ("plateau given a number", ["train.plateau=5"], "train.plateau=5 is not a group of values: write it as {window: "),
    ("experiment name with a slash", ["experiment_name=a/b"], "experiment_name='a/b' must name one folder inside"),
    ("experiment name ..", ["experiment_name=.."], "experiment_name='..' must name one folder inside results_dir"),
    ("a number for a boolean", ["model=vgg16", "model.batch_norm=2"], "model.batch_norm=2 is not true or false"),
    ("a word OmegaConf takes as true", ["rerun=yes"], "rerun='yes' is not true or false"),
    ("a one for a boolean", ["train.drop_last=1"], "train.drop_last=1 is not true or false"),
    ("empty results_dir", ["results_dir="], "results_dir is empty: name a folder, e.g. results_dir=results"),
    ("empty dataset root", ["dataset.root="], "dataset.root is empty: name a folder"),
    ("an interpolation of no key", ["results_dir=/a${b}"], "results_dir: Interpolation key 'b' not found (a value's"),
]


@pytest.mark.parametrize(("overrides", "message"), [c[1:] for c in CONFIG_CASES], ids=[c[0] for c in CONFIG_CASES])
def test_a_bad_config_value_gets_one_line_naming_it(make_config, overrides, message):
    found = problem(make_config(*overrides))
    assert found is not None and message in found, found
    assert "\n" not in found


def test_a_good_config_has_no_problem(make_config):
    assert problem(make_config()) is None


def test_results_dir_that_is_a_file_is_refused(make_config, tmp_path):
    file = tmp_path / "results.txt"
    file.write_text("a file")
    assert f"results_dir={file} is a file, not a folder" in problem(make_config(f"results_dir={file}"))
    inside = file / "deeper"
    assert f"results_dir={inside} is not a folder this user can write in" in problem(
        make_config(f"results_dir={inside}")
    )


@pytest.mark.parametrize("option", ["results_dir", "dataset.predecoded_dir", "dataset.root"])
def test_every_folder_option_that_is_a_file_or_inside_one_is_refused_before_anything_is_written(
    make_config, tmp_path, option
):
    file = tmp_path / "a-file"
    file.write_text("a file")
    group = ["dataset=imagefolder", f"dataset.root={tmp_path}"] if option != "dataset.root" else []
    assert f"{option}={file} is a file, not a folder" in problem(make_config(*group, f"{option}={file}"))
    inside = file / "deeper"
    found = problem(make_config(*group, f"{option}={inside}"))
    assert f"{option}={inside} is not a folder this user can write in ({file} is a file, not a folder)" in found
    assert not inside.exists() and file.read_text() == "a file"


@pytest.mark.parametrize(
    ("command", "overrides", "option"),
    [
        ("saddle", ["experiment=fig8_saddle"], "results_dir"),
        ("saddle", ["--analytic", "experiment=quickstart"], "results_dir"),
        ("prepare-data", ["dataset=imagefolder", "dataset.root=ROOT"], "dataset.predecoded_dir"),
        ("run", ["logger=tensorboard"], "logger.tensorboard.dir"),
        ("tune", ["experiment=quickstart", "optimizer=sgd"], "results_dir"),  # before any "tune: ... rates" line
    ],
)
def test_the_commands_refuse_a_folder_option_that_is_a_file_in_one_line(
    cifar_root, image_root, tmp_path, command, overrides, option
):
    file = tmp_path / "a-file"
    file.write_text("a file")
    args = [a.replace("ROOT", str(image_root)) for a in overrides]
    out = llbbench(command, *args, f"{option}={file}", data=cifar_root)
    assert out.returncode == 2, out.stderr
    assert "rates" not in out.stdout, out.stdout
    assert out.stderr.strip() == f"llbbench {command}: error: {option}={file} is a file, not a folder; name a folder " \
                                 "(it is created if missing)"  # fmt: skip
    assert file.read_text() == "a file"


def test_a_subset_smaller_than_the_classes_is_refused_also_without_folds(make_config):
    for option in ("dataset.subset", "dataset.test_subset"):
        with pytest.raises(ValueError, match=rf"{option}=5 is smaller than the 10 classes: some classes would have no"):
            one_run.prepare(make_config("fold=none", f"{option}=5"))


def test_missing_cifar_names_the_folder_and_both_ways_to_get_it(make_config, tmp_path):
    found = problem(make_config(f"dataset.root={tmp_path}", "dataset.download=false"))
    assert f"expected the official python-pickle files in {tmp_path / 'cifar-10-batches-py'}/" in found


# --- bad data: found when the data is read, before anything is trained ---


def test_a_subset_smaller_than_classes_times_folds_is_refused(make_config):
    with pytest.raises(ValueError, match=r"dataset.subset=30 is too small for 10 classes in 5 folds: use at least 50"):
        one_run.prepare(make_config("dataset.subset=30"))


def test_a_cifar_label_outside_the_classes_names_the_file(make_config, tmp_path):
    root = write_cifar(tmp_path / "data")
    path = root / "cifar-10-batches-py" / "data_batch_3"
    batch = pickle.loads(path.read_bytes())
    batch["labels"][5] = 11
    path.write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(ValueError, match=rf"{path}: label 11 of image 5 is outside the classes 0..9"):
        one_run.prepare(make_config(f"dataset.root={root}"))


def _folder(tmp_path: Path) -> Path:
    return write_image_folder(tmp_path / "images", train_per_class=5, val_per_class=1)


FOLDER = ["dataset=imagefolder", "dataset.num_workers=0", "dataset.resize=36", "dataset.crop=32", "cv.folds=2"]


def test_empty_image_files_are_named_and_counted(make_config, tmp_path):
    root = _folder(tmp_path)
    for name in ("cat/a_empty.JPEG", "dog/b_empty.png"):
        (root / "train" / name).write_bytes(b"")
    with pytest.raises(ValueError, match=r"a_empty.JPEG is empty \(zero bytes\) and 1 more of the split's 17 images"):
        one_run.prepare(make_config(*FOLDER, f"dataset.root={root}"))


def test_unreadable_images_are_named_and_counted_and_the_run_is_failed(make_config, tmp_path):
    root = _folder(tmp_path)
    for name in ("cat/a_text.JPEG", "fish/b_text.png"):
        (root / "train" / name).write_text("not an image")
    cfg = make_config(*FOLDER, f"dataset.root={root}", "fold=none", "train.batch_size=4", "train.epochs=1")
    assert one_run.execute(cfg, tmp_path / "run") == "failed"
    error = json.loads((tmp_path / "run" / "summary.json").read_text())["error"]["message"]
    assert error.startswith(f"unreadable image {root / 'train' / 'cat' / 'a_text.JPEG'} (")
    assert error.endswith("; 1 more of the split's 17 images are unreadable too; remove or replace them")


# --- the command line: exit codes, one message, no traceback ---


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["seed=abc"], "llbbench run: error: seed='abc' is not an integer"),
        (["+train.epoch=2"], "llbbench run: error: unknown key train.epoch; did you mean train.epochs?"),
        (["dataset=imagefolder"], "llbbench run: error: dataset.root must be set"),
        (["optimizer.lr"], "llbbench run: error: override 'optimizer.lr' has no '=': write optimizer.lr=VALUE"),
        (
            ["-m", "optimizer=sgd,nosuch"],
            "error: optimizer=nosuch: there is no such optimizer config; valid: adadelta,",
        ),
        (["-m", "hydra/launcher=slurm"], "error: hydra/launcher=slurm needs Slurm, but sbatch and srun are not on"),
        (
            ["experiment_name=../escape"],
            "llbbench run: error: experiment_name='../escape' must name one folder inside "
            "results_dir (no '/', not '.' or '..'); to write elsewhere, set results_dir",
        ),
    ],
    ids=[
        "wrong type",
        "unknown key",
        "missing root",
        "no equals sign",
        "a sweep with an unknown config",
        "no Slurm",
        "a name that leaves results_dir",
    ],
)
def test_the_command_line_refuses_bad_input_before_creating_anything(cifar_root, tmp_path, overrides, message):
    no_slurm = {"PATH": str(Path(sys.executable).parent)}  # this Python, and no sbatch or srun
    flags = [o for o in overrides if o.startswith("-")]  # -m comes before the overrides
    values = [o for o in overrides if o not in flags]
    out = llbbench("run", *flags, *SHRINK, *values, f"results_dir={tmp_path / 'results'}", data=cifar_root,
                   env=no_slurm)  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert message in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert not (tmp_path / "results" / "runs").exists()  # nothing ran: in a sweep, not even its valid runs
    assert not (tmp_path / "escape").exists()


# Hydra's own errors, as the command line says them (`config.error_line`): (case, overrides, what it says)
HYDRA_CASES = [
    (
        "unknown optimizer config",
        ["optimizer=adamw"],
        "optimizer=adamw: there is no such optimizer config; valid: "
        "adadelta, adagrad, adam, esgd, llb, llb_global, nag, pathsgd, rmsprop, sgd, sgd_cosine, sgd_inverse_time",
    ),
    (
        "unknown launcher",
        ["hydra/launcher=nosuch"],
        "hydra/launcher=nosuch: there is no such hydra/launcher config; valid: basic, cores, joblib, slurm",
    ),
    ("no equals sign", ["optimizer.lr"], "override 'optimizer.lr' has no '=': write optimizer.lr=VALUE"),
    (
        "a comma without -m",
        ["results_dir=/a,b"],
        "override 'results_dir=/a,b': a comma makes a sweep (add -m to run one run per value) or, in brackets, a list "
        "(results_dir=[a,b]); for one value that holds a comma, quote it: 'results_dir=\"/a,b\"'",
    ),
    (
        "brackets in a path",
        ["results_dir=/a(b)"],
        "override 'results_dir=/a(b)': '(' ')' in a value are part of Hydra's override syntax; quote the value to mean "
        "it as written, e.g. 'results_dir=\"/a(b)\"'",
    ),
    ("a tilde", ["results_dir=~/runs"], "is not expanded to your home folder: write the full path"),
    (
        "unclosed list",
        ["train.epochs=[1,2"],
        "override 'train.epochs=[1,2' is malformed (no viable alternative at "
        "input '[1,2'): write KEY=VALUE, a list as [a,b]",
    ),
    (
        "unquoted non-ASCII path",
        ["dataset.root=/data/café"],
        "override 'dataset.root=/data/café' holds characters "
        "that Hydra takes only inside quotes: quote the value, e.g. 'dataset.root=\"/data/café\"'",
    ),
    (
        "unknown key without +",
        ["train.epochz=3"],
        "unknown key train.epochz; did you mean train.epochs? (valid keys of train: epochs, batch_size",
    ),
    ("a key of a removed group", ["~model", "model.width=0.5"], "unknown key model.width: the config has no model"),
    (
        "n_jobs without joblib",
        ["hydra.launcher.n_jobs=2"],
        "Could not override 'hydra.launcher.n_jobs': Key 'n_jobs' "
        "not in 'BasicLauncherConf' (the default launcher runs one run after another: choose a launcher first, e.g. "
        "hydra/launcher=joblib)",
    ),
    (
        "n_jobs not a number",
        ["hydra/launcher=joblib", "hydra.launcher.n_jobs=abc"],
        "Error merging override hydra.launcher.n_jobs=abc: Value 'abc' of type 'str' could not be converted to Integer",
    ),
]


@pytest.mark.parametrize(("overrides", "message"), [c[1:] for c in HYDRA_CASES], ids=[c[0] for c in HYDRA_CASES])
def test_hydras_own_errors_get_one_line_with_the_valid_choices(overrides, message):
    with pytest.raises(Exception) as error:
        config.compose(overrides, hydra=True)
    line = config.error_line(error.value, overrides)
    assert message in line and "\n" not in line, line


def test_a_quoted_non_ascii_path_is_taken(make_config):
    assert make_config('dataset.root="/data/café"').dataset.root == "/data/café"


def test_a_group_left_unchosen_names_its_entries():
    assert problem(config.compose(["~model"])) == (
        "model is not chosen: add model=NAME (valid: alexnet, googlenet, mlp, resnet152, resnet34, resnet50, "
        "smallcnn, vgg16)"
    )


def test_launcher_values_that_cannot_launch_are_named(tmp_path, monkeypatch):
    joblib = config.compose(["hydra/launcher=joblib", "hydra.launcher.n_jobs=0"], hydra=True).hydra.launcher
    assert launcher_problem(joblib).startswith("hydra.launcher.n_jobs=0 runs nothing")
    slurm = config.compose(["hydra/launcher=slurm"], hydra=True).hydra.launcher
    monkeypatch.setenv("PATH", str(tmp_path))  # a machine without Slurm's commands
    assert launcher_problem(slurm).startswith("hydra/launcher=slurm needs Slurm, but sbatch and srun are not on PATH")
    assert launcher_problem(config.compose(["hydra/launcher=joblib"], hydra=True).hydra.launcher) is None


def test_an_option_a_command_does_not_take_gets_its_usage():
    out = llbbench("saddle", "--bogus")
    assert out.returncode == 2
    assert out.stderr.startswith("usage: llbbench saddle [--analytic] experiment=fig8_saddle [OVERRIDE ...]")
    assert out.stderr.strip().endswith("llbbench saddle: error: unknown option --bogus: this command takes "
                                       "--analytic and overrides only (KEY=VALUE)")  # fmt: skip
    out = llbbench("tune", "--bogus")
    assert out.returncode == 2
    assert out.stderr.strip().endswith("llbbench tune: error: unknown option --bogus: this command takes overrides "
                                       "only (KEY=VALUE)")  # fmt: skip


# --- runs that blow up, and what a diverged run records ---


def test_a_finite_blow_up_is_diverged_and_the_summary_says_it_blew_up(make_config, tmp_path):
    cfg = make_config("optimizer=sgd", "optimizer.lr=30", "train.epochs=1", "dataset.subset=200", "cv.folds=2")
    assert one_run.execute(cfg, tmp_path / "run") == "diverged"
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    loss = summary["final"]["train_loss"]
    assert math.isfinite(loss) and loss > 2 * math.log(10)
    assert summary["diverged_why"] == f"blew up: the final training loss {loss:.4g} is above 2·ln 10 = 4.605"


def test_a_diverged_runs_summary_is_strict_json(make_config, tmp_path):
    """The last steps' weights blow up: the epoch's training loss is finite, its test loss is not (null)."""
    cfg = make_config("optimizer=sgd", "optimizer.lr=1e6", "train.epochs=1", "dataset.subset=100", "cv.folds=2")
    assert one_run.execute(cfg, tmp_path / "run") == "diverged"
    text = (tmp_path / "run" / "summary.json").read_text()

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in summary.json, which is not JSON")

    summary = json.loads(text, parse_constant=refuse)
    assert summary["status"] == "diverged" and summary["final"]["test_loss"] is None
    assert summary["diverged_why"] == "the loss became non-finite"


def test_the_report_counts_a_blow_up_recorded_as_completed_as_diverged(tmp_path):
    for fold in (0, 1):
        write_run(tmp_path, "table2_cifar10", "resnet34", "llb", fold, [2.0, 1.0 + fold / 10], 1.5)
        write_run(tmp_path, "table2_cifar10", "resnet34", "sgd", fold, [2.0, 4.0e6], 3.0e7)  # recorded completed
    report = build_report([tmp_path])
    text = (report / "report.md").read_text()
    assert "- runs: 4 (2 completed, 2 diverged)" in text
    assert (
        "- blew up: 2 runs ended with a finite final training loss above 2·ln C (C classes), counted as diverged "
        "(resnet34 × sgd (2)); 2 of them were recorded as completed or stopped, before that rule"
    ) in text
    assert "| resnet34 | train loss | **1.050 ± 0.071** | div. |" in (report / "table2.md").read_text()
    assert "4000000" not in (report / "claims.json").read_text()


# --- the report: runs of different settings, damaged tables ---


def test_runs_of_different_budgets_never_share_a_cell(tmp_path):
    for fold in (0, 1, 2):
        write_run(tmp_path, "table2_cifar10", "resnet34", "llb", fold, [2.0] * 7 + [0.5], 1.0)
        write_run(tmp_path, "table2_cifar10", "resnet34", "sgd", fold, [2.0] * 7 + [1.0], 1.5)
    for fold in (0, 1):  # one epoch (another folder of the same experiment group)
        write_run(tmp_path, "table2_cifar10_short", "resnet34", "sgd", fold, [1.8], 1.9)
    report = build_report([tmp_path])
    assert "| resnet34 | train loss | **0.500 ± 0.000** | 1.000 ± 0.000 |" in (report / "table2.md").read_text()
    short = (report / "table2_epochs-1.md").read_text()
    assert short.startswith("**Table 2: final training loss, test loss and test accuracy per optimizer (one-shot "
                            "rates) — runs with train.epochs=1**")  # fmt: skip
    assert "| resnet34 | train loss | **1.800 ± 0.000** |" in short
    assert (
        "- **table2 (one-shot) mixes settings**: train.epochs=8 (6 runs); train.epochs=1 (2 runs). Runs of "
        "different settings never share a cell"
    ) in (report / "report.md").read_text()
    alone = tmp_path / "alone"  # the 8-epoch runs by themselves: the claims read them, and only them
    shutil.copytree(tmp_path / "table2_cifar10", alone / "table2_cifar10")
    claims, expected = (json.loads((r / "claims.json").read_text()) for r in (report, build_report([alone])))
    assert claims[0]["rows"] == expected[0]["rows"] and len(claims[0]["rows"]["resnet34"]["per_fold"]) == 3


def _cut_mid_row(path: Path) -> None:
    path.write_text(path.read_text()[:-4])


def _cut_to_two_thirds(path: Path) -> None:
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[: len(lines) * 2 // 3]))


@pytest.mark.parametrize(("name", "cut"), [("epochs.csv", _cut_mid_row), ("steps.csv", _cut_to_two_thirds)],
                         ids=["epochs.csv cut mid-row", "steps.csv cut to two thirds"])  # fmt: skip
def test_a_cut_table_is_named_and_its_run_left_out(tmp_path, name, cut):
    for fold in (0, 1):
        write_run(tmp_path, "table2_cifar10", "resnet34", "sgd", fold, [2.0, 1.5, 1.2, 1.0, 0.9, 0.8], 1.5)
    damaged = write_run(tmp_path, "table2_cifar10", "resnet34", "llb", 0, [2.0, 1.5, 1.2, 1.0, 0.9, 0.8], 1.5)
    cut(damaged / name)
    text = (build_report([tmp_path]) / "report.md").read_text()
    assert f"- **1 run directories could not be read** and are left out:\n  - `{damaged}`: ValueError: " in text
    assert f"{damaged / name} holds " in text and "the file is cut or damaged" in text
    assert "- runs: 2 (2 completed)" in text


# --- tuning.json: merged, never overwritten; a damaged one named before anything runs ---


def test_tune_keeps_the_other_entries_of_tuning_json_and_follows_a_sweep_restriction(cifar_root, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(tuning, "launch", _fake_launch(lambda r: 1 + abs(math.log10(r) + 1), calls))
    path = tmp_path / "quickstart" / "tuning.json"
    path.parent.mkdir(parents=True)
    adam = {"network": "smallcnn", "optimizer": "adam", "configured": 0.001, "fold": 0, "edge": False,
            "grid": [0.001], "val_loss": [1.0], "winner": 0.001}  # fmt: skip
    path.write_text(json.dumps([adam]))
    quickstart = [o for o in TINY if o != "optimizer=sgd"]  # its sweep: LLb-SGD, SGD and Adam
    tuning.tune([*quickstart, f"dataset.root={cifar_root}", f"results_dir={tmp_path}",
                 "hydra.sweeper.params.optimizer=sgd"])  # fmt: skip
    assert {optimizer for optimizer, _ in calls} == {"sgd"}
    entries = json.loads(path.read_text())
    assert [e["optimizer"] for e in entries] == ["adam", "sgd"] and entries[0] == adam
    assert tuning_file.tuned_entry(tmp_path, "quickstart", "smallcnn", "adam")["winner"] == 0.001


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "is not valid JSON"),
        ('{"network": "smallcnn"}', "holds a dict, not a list of entries"),
        (
            '[{"network": "smallcnn", "optimizer": "llb", "configured": 0.1, "grid": [0.1], "val_loss": [1.0], '
            '"winner": "abc"}]',
            "entry 0 (smallcnn × llb): winner 'abc' is not a positive number",
        ),
        (
            '[{"network": "smallcnn", "optimizer": "llb", "configured": 0.1, "grid": [0.1], "val_loss": [1.0], '
            '"winner": -1}]',
            "entry 0 (smallcnn × llb): winner -1 is not a positive number",
        ),
        (
            '[{"network": "smallcnn", "optimizer": "llb", "configured": 0.1, "grid": [0.1], "val_loss": [1.0], '
            '"winner": 0}]',
            "entry 0 (smallcnn × llb): winner 0 is not a positive number",
        ),
    ],
    ids=["malformed", "not a list", "winner not a number", "negative winner", "zero winner"],
)
def test_a_damaged_tuning_json_is_named_before_anything_runs(make_config, tmp_path, text, message):
    path = tmp_path / "results" / "runs" / "tuning.json"
    path.parent.mkdir(parents=True)
    path.write_text(text)
    found = problem(make_config("tuned=true"))
    assert found.startswith(str(path)) and message in found and "\n" not in found, found
    assert found.endswith("fix it, or move it away and run llbbench tune again")


# --- checkpoints that cannot be resumed from ---


def _half(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


CHECKPOINT_DAMAGE = [
    ("half", _half, "is damaged", "corrupt"),
    ("garbage", lambda path: path.write_bytes(os.urandom(4096)), "is damaged", "corrupt"),
    ("empty", lambda path: path.write_bytes(b""), "is damaged", "corrupt"),
    (
        "not a checkpoint",
        lambda path: torch.save({"weights": torch.zeros(3)}, path),
        "is not an llbbench checkpoint",
        "corrupt",
    ),
]


@pytest.mark.parametrize(("damage", "problem_text", "aside"), [c[1:] for c in CHECKPOINT_DAMAGE],
                         ids=[c[0] for c in CHECKPOINT_DAMAGE])  # fmt: skip
def test_a_damaged_checkpoint_is_named_and_rerun_moves_it_aside(make_config, tmp_path, damage, problem_text, aside):
    run_dir = tmp_path / "run"
    one_run.run(make_config("train.epochs=1", "keep_checkpoint=true"), run_dir)
    (run_dir / "summary.json").unlink()  # as if it had been killed after its checkpoint
    damage(run_dir / CHECKPOINT)
    damaged = (run_dir / CHECKPOINT).read_bytes()
    with pytest.raises(ValueError) as refused:
        one_run.run(make_config("train.epochs=1"), run_dir)
    assert str(refused.value).startswith(f"{run_dir / CHECKPOINT} {problem_text}")
    assert str(refused.value).endswith(f"rerun=true moves it aside (to {CHECKPOINT}.{aside}) and trains the run from "
                                       "scratch")  # fmt: skip
    assert "\n" not in str(refused.value)
    summary = one_run.run(make_config("train.epochs=1", "rerun=true"), run_dir)
    assert summary["status"] == "completed" and summary["resumed_at_steps"] == []
    assert (run_dir / f"{CHECKPOINT}.{aside}").read_bytes() == damaged


def test_another_configs_checkpoint_is_refused_and_rerun_moves_it_aside(make_config, tmp_path):
    run_dir = tmp_path / "run"
    one_run.run(make_config("train.epochs=1", "seed=1", "keep_checkpoint=true"), run_dir)
    foreign = (run_dir / CHECKPOINT).read_bytes()
    with pytest.raises(ValueError, match=r"checkpoint.pt belongs to another config; rerun=true moves it aside \(to "
                                         r"checkpoint.pt.foreign\)"):  # fmt: skip
        one_run.run(make_config("train.epochs=1"), run_dir)
    assert one_run.run(make_config("train.epochs=1", "rerun=true"), run_dir)["status"] == "completed"
    assert (run_dir / f"{CHECKPOINT}.foreign").read_bytes() == foreign


# --- image folders and their predecoded arrays ---


def _text(path: Path) -> None:
    path.write_text("not an image")


def _truncated(path: Path) -> None:
    good = next(path.parent.glob("*.JPEG")).read_bytes()
    path.write_bytes(good[: len(good) // 2])


IMAGE_DAMAGE = [
    ("text named .JPEG", _text, "unreadable image {path} (UnidentifiedImageError"),
    ("truncated JPEG", _truncated, "unreadable image {path}: image file is truncated"),
    ("a link to nothing", lambda path: path.symlink_to(path.parent / "gone.JPEG"), "image file {path} is unreadable"),
    ("a directory named .JPEG", lambda path: path.mkdir(), "image file {path} is not a file (a directory?)"),
]


@pytest.mark.parametrize(("damage", "message"), [c[1:] for c in IMAGE_DAMAGE], ids=[c[0] for c in IMAGE_DAMAGE])
def test_a_bad_image_is_named_in_one_line(make_config, tmp_path, damage, message):
    root = _folder(tmp_path)
    path = root / "train" / "cat" / "x_bad.JPEG"
    damage(path)
    cfg = make_config(*FOLDER, f"dataset.root={root}", "fold=none", "train.batch_size=4", "train.epochs=1")
    found = problem(cfg)  # found before anything runs, or when the run reads it
    if found is None:
        assert one_run.execute(cfg, tmp_path / "run") == "failed"
        found = json.loads((tmp_path / "run" / "summary.json").read_text())["error"]["message"]
    assert found.startswith(message.format(path=path)) and "\n" not in found, found


def test_a_failure_inside_a_run_is_one_line_on_the_terminal_and_its_traceback_goes_to_the_runs_log(tmp_path):
    root = _folder(tmp_path)
    (root / "train" / "cat" / "x_bad.JPEG").write_text("not an image")
    out = llbbench("run", "device=cpu", "model.width=0.25", "train.epochs=1", *FOLDER, f"dataset.root={root}",
                   "fold=none", "train.batch_size=4", f"results_dir={tmp_path / 'results'}")  # fmt: skip
    assert out.returncode == 1
    assert "Traceback" not in out.stdout + out.stderr
    (failure,) = [line for line in out.stdout.splitlines() if "[ERROR]" in line]
    assert failure.endswith(f"run failed: ValueError: unreadable image {root / 'train' / 'cat' / 'x_bad.JPEG'} "
                            "(UnidentifiedImageError: cannot identify image file "
                            f"'{root / 'train' / 'cat' / 'x_bad.JPEG'}'); remove or replace them")  # fmt: skip
    (log,) = (tmp_path / "results" / "runs").glob("*/run.log")
    assert "the failure's traceback:\nTraceback (most recent call last):" in log.read_text()


def _predecoded(make_config, tmp_path):
    """A folder with BMP images (uncompressed: a rewrite keeps the size), its arrays, and its run config."""
    root = _folder(tmp_path)
    for i in range(2):
        Image.new("RGB", (40, 40), (20 * i, 100, 50)).save(root / "train" / "dog" / f"flat_{i}.bmp")
    cfg = make_config(*FOLDER, f"dataset.root={root}", "dataset.format=predecoded")
    options = OmegaConf.to_container(config.check(cfg).dataset, enum_to_str=True)
    predecoded.prepare(options, options["fingerprint"])
    one_run.prepare(cfg)  # fresh: it loads
    return root, cfg, options


COMMAND = "run again: llbbench prepare-data dataset=imagefolder dataset.root={root} dataset.resize=36 dataset.crop=32"


def test_predecoded_arrays_go_stale_when_an_image_is_rewritten_at_the_same_size(make_config, tmp_path):
    root, cfg, _ = _predecoded(make_config, tmp_path)
    image = root / "train" / "dog" / "flat_0.bmp"
    size, stamp = image.stat().st_size, image.stat().st_mtime_ns
    Image.new("RGB", (40, 40), (250, 0, 0)).save(image)  # other pixels
    os.utime(image, ns=(stamp + 10**9, stamp + 10**9))
    assert image.stat().st_size == size
    again = make_config(*FOLDER, f"dataset.root={root}", "dataset.format=predecoded")
    assert again.dataset.fingerprint == cfg.dataset.fingerprint  # the same data identity: the same run ids
    with pytest.raises(ValueError, match=r"are stale \(files changed since they were written\); run again: "):
        one_run.prepare(again)


def _truncate_array(out: Path) -> None:
    (out / "train.npy").write_bytes((out / "train.npy").read_bytes()[:200])


PREDECODED_DAMAGE = [
    ("train array truncated", _truncate_array, "{out}/train.npy is damaged ("),
    ("labels missing", lambda out: (out / "val.labels.npy").unlink(), "{out}/val.labels.npy is missing"),
    ("manifest garbage", lambda out: (out / "manifest.json").write_text("{garbage"), "{out}/manifest.json is damaged"),
]


@pytest.mark.parametrize(("damage", "message"), [c[1:] for c in PREDECODED_DAMAGE],
                         ids=[c[0] for c in PREDECODED_DAMAGE])  # fmt: skip
def test_damaged_predecoded_arrays_name_the_file_and_the_command_with_the_runs_own_sizes(make_config, tmp_path,
                                                                                        damage, message):  # fmt: skip
    root, cfg, _ = _predecoded(make_config, tmp_path)
    damage(root / ".predecoded")
    with pytest.raises(ValueError) as refused:
        one_run.prepare(cfg)
    text = str(refused.value)
    assert text.startswith(message.format(out=root / ".predecoded")) and "\n" not in text
    assert text.endswith(COMMAND.format(root=root))


def test_the_suggested_prepare_data_command_makes_the_run_load(make_config, tmp_path):
    root, cfg, _ = _predecoded(make_config, tmp_path)
    _truncate_array(root / ".predecoded")
    with pytest.raises(ValueError) as refused:
        one_run.prepare(cfg)
    command = str(refused.value).split("run again: llbbench ", 1)[1].split()
    done = llbbench(*command, "dataset.num_workers=0")
    assert done.returncode == 0, done.stderr
    one_run.prepare(cfg)  # the loop is closed: the arrays now match the run


# --- interrupted runs: Ctrl-C, a full disk, a read-only folder ---


def test_ctrl_c_says_where_the_run_stopped_exits_130_and_the_same_command_resumes(cifar_root, tmp_path):
    args = ["run", "device=cpu", "model.width=0.25", "train.epochs=2", "train.batch_size=8", "train.log_every=1",
            "checkpoint_minutes=0.0001", f"results_dir={tmp_path}"]  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "llbbench.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "LLBBENCH_DATA": str(cifar_root)},
    )
    try:
        deadline = time.time() + 120
        while not list(tmp_path.glob("runs/*/checkpoint.pt")) and time.time() < deadline:
            assert process.poll() is None, process.communicate()
            time.sleep(0.01)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130, err
    (line,) = [line for line in err.splitlines() if line.startswith("llbbench run:")]
    (run_dir,) = tmp_path.glob("runs/*")
    assert line.startswith("llbbench run: interrupted at step ")
    assert line.endswith(f"is kept in {run_dir}: run the same command to go on from there")
    assert "Traceback" not in err and not (run_dir / "summary.json").exists()
    resumed = llbbench(*args, data=cifar_root)
    assert resumed.returncode == 0 and "run completed" in resumed.stdout, resumed.stderr
    assert len(json.loads((run_dir / "summary.json").read_text())["resumed_at_steps"]) == 1


@pytest.fixture
def small_disk(tmp_path):
    """A 600 KB file system (tmpfs), mounted for the test: needs root."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    folder = tmp_path / "disk"
    folder.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(folder)], check=True)
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def test_a_full_disk_stops_the_run_in_one_line_with_its_checkpoint_intact(cifar_root, small_disk):
    """Each checkpoint of this run is about 0.4 MB: the first fits, the second cannot be written beside it."""
    args = ["run", "device=cpu", "model.width=1", "train.epochs=2", "train.batch_size=32", f"results_dir={small_disk}"]
    out = llbbench(*args, data=cifar_root)
    assert out.returncode == 1
    (run_dir,) = small_disk.glob("runs/*")
    assert out.stderr.strip().splitlines()[-1].startswith(f"llbbench run: error: no space left for {run_dir} (")
    assert "a checkpoint of this run needs 0.4 MB, written beside the previous one): free some space and run the same" \
           " command to resume from the last checkpoint, which is intact" in out.stderr  # fmt: skip
    assert "Traceback" not in out.stderr + out.stdout
    assert not list(run_dir.glob(".*.tmp")) and not (run_dir / "summary.json").exists()
    assert torch.load(run_dir / CHECKPOINT, weights_only=True)["progress"]["epochs"] == 1
    subprocess.run(["mount", "-o", "remount,size=8m", str(small_disk)], check=True)  # space freed
    resumed = llbbench(*args, data=cifar_root)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((run_dir / "summary.json").read_text())["resumed_at_steps"] == [15]


def test_a_report_into_a_folder_it_cannot_write_gets_one_line(tmp_path, capsys):
    write_run(tmp_path / "results", "table2_cifar10", "resnet34", "sgd", 0, [2.0, 1.0], 1.5)
    out = tmp_path / "readonly"
    out.mkdir()
    if os.geteuid() == 0:  # root writes through permissions: a read-only file system instead
        subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(out)], check=True)
    else:
        out.chmod(0o500)
    try:
        assert cli.main(["report", str(tmp_path / "results"), "--out", str(out / "report")]) == 2
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", str(out)], check=True)
    err = capsys.readouterr().err
    assert err.startswith(f"llbbench report: error: cannot write the report in {out / 'report'} (")
    assert err.strip().endswith("name a folder you can write in with --out DIR") and len(err.splitlines()) == 1
