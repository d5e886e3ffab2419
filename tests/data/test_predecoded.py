"""`llbbench prepare-data` and `dataset.format=predecoded`: the same pixels as the folder pipeline, the same run
(bitwise-equal weights, the same run id), and a clear message for missing or stale arrays."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from llbbench import data
from llbbench import run as one_run
from llbbench.records.run import run_id

from ..conftest import llbbench, write_image_folder

FOLDER = ["dataset=imagefolder", "dataset.num_workers=0", "dataset.resize=36", "dataset.crop=32", "cv.folds=2",
          "model=smallcnn", "train.epochs=2", "train.batch_size=4", "optimizer=sgd", "optimizer.lr=0.05"]  # fmt: skip


@pytest.fixture
def folder(tmp_path):
    return write_image_folder(tmp_path / "images")


def prepare(folder) -> str:
    out = llbbench("prepare-data", "dataset=imagefolder", f"dataset.root={folder}", "dataset.num_workers=0",
                   "dataset.resize=36", "dataset.crop=32")  # fmt: skip
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_prepare_data_writes_the_pixels_of_the_folder_pipeline(folder):
    assert f"predecoded arrays written: {folder / '.predecoded'}" in prepare(folder)
    options = {"name": "imagefolder", "root": str(folder), "train_split": "train", "test_split": "val",
               "resize": 36, "crop": 32, "num_workers": 0, "mean": [0.5] * 3, "std": [0.25] * 3}  # fmt: skip
    from_folder = data.build({**options, "format": "folder"}, device=torch.device("cpu"))
    from_arrays = data.build({**options, "format": "predecoded"}, device=torch.device("cpu"))
    assert isinstance(from_arrays.train, data.PredecodedSplit) and from_arrays.num_classes == 3
    order = torch.randperm(len(from_folder.train), generator=torch.Generator().manual_seed(1))
    for split_a, split_b, order_ in (
        (from_folder.train, from_arrays.train, order),
        (from_folder.test, from_arrays.test, None),
    ):
        for (xa, ya), (xb, yb) in zip(split_a.batches(5, order_), split_b.batches(5, order_), strict=True):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert np.load(folder / ".predecoded" / "train.npy", mmap_mode="r").dtype == np.uint8


def test_a_run_on_the_arrays_equals_the_run_on_the_folder(folder, make_config, tmp_path):
    on_folder = make_config(*FOLDER, f"dataset.root={folder}")
    on_arrays = make_config(*FOLDER, f"dataset.root={folder}", "dataset.format=predecoded")
    prepare(folder)
    a = one_run.run(on_folder, tmp_path / "a")
    b = one_run.run(on_arrays, tmp_path / "b")
    assert a["status"] == b["status"] == "completed"
    assert a["model_sha256"] == b["model_sha256"]
    assert run_id(OmegaConf.to_container(on_folder, resolve=True)) == run_id(
        OmegaConf.to_container(on_arrays, resolve=True)
    )  # the format is not part of the run's identity


def test_missing_or_stale_arrays_name_the_command_that_makes_them(folder, make_config, tmp_path):
    cfg = make_config(*FOLDER, f"dataset.root={folder}", "dataset.format=predecoded")
    with pytest.raises(
        FileNotFoundError, match=r"no predecoded arrays in .*run: llbbench prepare-data dataset=imagefolder"
    ):
        one_run.prepare(cfg)
    prepare(folder)
    one_run.prepare(cfg)  # fresh: it loads
    Image.new("RGB", (40, 40), (10, 200, 30)).save(folder / "train" / "cat" / "extra.JPEG")  # the folder changed
    stale = make_config(*FOLDER, f"dataset.root={folder}", "dataset.format=predecoded")
    with pytest.raises(
        ValueError, match=r"stale \(fingerprint, files changed.*run again: llbbench prepare-data .*resize=36"
    ):
        one_run.prepare(stale)
    shutil.rmtree(folder / ".predecoded")


def test_prepare_data_refuses_cifar10(tmp_path):
    out = llbbench("prepare-data", "dataset=cifar10", f"dataset.root={tmp_path}")
    assert out.returncode == 2 and "prepare-data is for image folders" in out.stderr


def test_the_arrays_of_a_class_subset_live_beside_those_of_the_whole_folder(folder):
    prepare(folder)
    out = llbbench("prepare-data", "dataset=imagefolder", f"dataset.root={folder}", "dataset.num_workers=0",
                   "dataset.resize=36", "dataset.crop=32", "dataset.classes=[dog,cat]")  # fmt: skip
    assert out.returncode == 0, out.stderr
    subset = next(folder.glob(".predecoded-classes-*"))
    assert f"predecoded arrays written: {subset}" in out.stdout
    options = {"name": "imagefolder", "root": str(folder), "train_split": "train", "test_split": "val",
               "resize": 36, "crop": 32, "num_workers": 0, "mean": [0.5] * 3, "std": [0.25] * 3,
               "format": "predecoded"}  # fmt: skip
    whole = data.build(options, device=torch.device("cpu"))
    some = data.build({**options, "classes": ["cat", "dog"]}, device=torch.device("cpu"))
    assert (whole.num_classes, some.num_classes) == (3, 2) and len(some.train) == 12 and len(whole.train) == 18
