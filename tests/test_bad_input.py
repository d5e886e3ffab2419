"""The catalogue of bad inputs: each gets one clear line naming the value and what is valid, and nothing is lost.

Config and data cases are checked in-process through the same check the command line runs before Hydra
creates anything (`preflight.problem`); a few go through the real command line to see the exit code and that
no traceback is printed.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from llbbench import train
from llbbench.preflight import problem
from tests.conftest import llbbench, write_cifar, write_image_folder

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
    ("unknown optimizer", ["optimizer.name=nosuch"], "unknown optimizer 'nosuch'; valid names: adadelta, adagrad"),
    ("unknown preset", ["optimizer.preset=tf2"], "unknown preset 'tf2' for optimizer 'llb'; valid presets"),
    ("unknown network", ["model.name=nosuch"], "unknown model 'nosuch'; valid names: alexnet, googlenet"),
    ("unknown init", ["init.name=nosuch"], "unknown init 'nosuch'; valid names: default, msra, normal"),
    ("unknown dataset", ["dataset.name=nosuch"], "unknown dataset 'nosuch'; valid names: cifar10, imagefolder"),
    ("unknown device", ["device=tpu"], "device='tpu' is not a device; use auto, cpu, cuda or cuda:N"),
    ("image folder without root", ["dataset=imagefolder", "dataset.root=???"], "dataset.root must be set"),
    ("fingerprint set by hand", ["dataset.fingerprint=mine"], "dataset.fingerprint='mine', found 'cifar10-"),
    ("image folder root missing", ["dataset=imagefolder", "dataset.root=/nowhere"], "image folder split 'train' not"),
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


def test_missing_cifar_names_the_folder_and_both_ways_to_get_it(make_config, tmp_path):
    found = problem(make_config(f"dataset.root={tmp_path}", "dataset.download=false"))
    assert f"expected the official python-pickle files in {tmp_path / 'cifar-10-batches-py'}/" in found


# --- bad data: found when the data is read, before anything is trained ---


def test_a_subset_smaller_than_classes_times_folds_is_refused(make_config):
    with pytest.raises(ValueError, match=r"dataset.subset=30 is too small for 10 classes in 5 folds: use at least 50"):
        train.prepare(make_config("dataset.subset=30"))


def test_a_cifar_label_outside_the_classes_names_the_file(make_config, tmp_path):
    root = write_cifar(tmp_path / "data")
    path = root / "cifar-10-batches-py" / "data_batch_3"
    batch = pickle.loads(path.read_bytes())
    batch["labels"][5] = 11
    path.write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(ValueError, match=rf"{path}: label 11 of image 5 is outside the classes 0..9"):
        train.prepare(make_config(f"dataset.root={root}"))


def _folder(tmp_path: Path) -> Path:
    return write_image_folder(tmp_path / "images", train_per_class=5, val_per_class=1)


FOLDER = ["dataset=imagefolder", "dataset.num_workers=0", "dataset.resize=36", "dataset.crop=32", "cv.folds=2"]


def test_empty_image_files_are_named_and_counted(make_config, tmp_path):
    root = _folder(tmp_path)
    for name in ("cat/a_empty.JPEG", "dog/b_empty.png"):
        (root / "train" / name).write_bytes(b"")
    with pytest.raises(ValueError, match=r"a_empty.JPEG is empty \(zero bytes\) and 1 more of the split's 17 images"):
        train.prepare(make_config(*FOLDER, f"dataset.root={root}"))


def test_unreadable_images_are_named_and_counted_and_the_run_is_failed(make_config, tmp_path):
    root = _folder(tmp_path)
    for name in ("cat/a_text.JPEG", "fish/b_text.png"):
        (root / "train" / name).write_text("not an image")
    cfg = make_config(*FOLDER, f"dataset.root={root}", "fold=none", "train.batch_size=4", "train.epochs=1")
    assert train.execute(cfg, tmp_path / "run") == "failed"
    error = json.loads((tmp_path / "run" / "summary.json").read_text())["error"]["message"]
    assert error.startswith(f"unreadable image {root / 'train' / 'cat' / 'a_text.JPEG'} (")
    assert error.endswith("; 1 more of the split's 17 images are unreadable too; remove or replace them")


# --- the command line: exit codes, one message, no traceback ---

SHRINK = ["device=cpu", "model.width=0.25", "train.epochs=1", "train.batch_size=64"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["seed=abc"], "llbbench run: error: seed='abc' is not an integer"),
        (["+train.epoch=2"], "llbbench run: error: unknown key train.epoch; did you mean train.epochs?"),
        (["dataset=imagefolder"], "llbbench run: error: dataset.root must be set"),
    ],
    ids=["wrong type", "unknown key", "missing root"],
)
def test_the_command_line_refuses_bad_input_before_creating_anything(cifar_root, tmp_path, overrides, message):
    out = llbbench("run", *SHRINK, *overrides, f"results_dir={tmp_path / 'results'}", data=cifar_root)
    assert out.returncode == 2
    assert message in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "results").exists()


def test_a_blown_up_run_is_diverged_not_completed(make_config, tmp_path):
    """The last steps' weights blow up: the epoch's training loss is finite, its test loss is not."""
    cfg = make_config("optimizer=sgd", "optimizer.lr=1e6", "train.epochs=1", "dataset.subset=100", "cv.folds=2")
    assert train.execute(cfg, tmp_path / "run") == "diverged"
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "diverged"
    assert not np.isfinite(summary["final"]["test_loss"])
