"""Image folders (ImageNet layout): decoding mixed images, batching, folds, and clear errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from llbbench import data
from llbbench import run as one_run
from tests.conftest import write_image_folder


def options(root: Path, **extra) -> dict:
    return {
        "name": "imagefolder",
        "root": str(root),
        "train_split": "train",
        "test_split": "val",
        "resize": 256,
        "crop": 224,
        "num_workers": 2,
        "mean": [0.5, 0.5, 0.5],
        "std": [0.25, 0.25, 0.25],
        **extra,
    }


def test_mixed_images_decode_to_rgb_crops(image_root):
    built = data.build(options(image_root), device=torch.device("cpu"), fold=0, folds=3)
    assert built.num_classes == 3 and built.input_shape == (3, 224, 224)
    assert len(built.train) + len(built.val) == 18 and len(built.test) == 6
    assert sorted(torch.bincount(built.val.labels).tolist()) == [2, 2, 2]  # stratified
    batches = list(built.train.batches(5, order=data.epoch_order(len(built.train), 0, 1)))
    assert [len(y) for _, y in batches] == [5, 5, 2]
    images, labels = batches[0]
    assert images.shape == (5, 3, 224, 224) and images.dtype == torch.float32
    # class c was drawn around 60c + 30 on every channel: the decoded, normalized mean follows it
    means = {int(y): x.mean().item() * 0.25 * 255 + 0.5 * 255 for x, y in zip(images, labels, strict=True)}
    for c, value in means.items():
        assert abs(value - (60 * c + 30)) < 12


def test_batches_follow_the_given_order(image_root):
    built = data.build(options(image_root), device=torch.device("cpu"))
    order = torch.tensor([5, 0, 17, 3])
    subset = built.train.take(order)
    _, labels = next(subset.batches(4))
    assert labels.tolist() == built.train.labels[order].tolist()


def test_one_loader_with_persistent_workers_serves_every_epoch(image_root):
    train_split = data.build(options(image_root, num_workers=1, resize=40, crop=32), device=torch.device("cpu")).train
    passes = []
    for epoch in (1, 2, 3):
        order = data.epoch_order(len(train_split), 0, epoch)
        labels = torch.cat([y for _, y in train_split.batches(4, order)])
        assert labels.tolist() == train_split.labels[order].tolist()  # each pass in its own order
        passes.append(labels)
    assert len(train_split._loaders) == 1  # one DataLoader for the batch size, reused
    loader, _ = train_split._loaders[(4, False)]
    assert loader.persistent_workers and loader._iterator is not None  # its workers outlive a pass
    _, skipped = next(train_split.batches(4, data.epoch_order(len(train_split), 0, 1), skip=2))
    assert skipped.tolist() == passes[0][8:12].tolist()  # resuming mid-epoch: from batch 2 on


def test_missing_split_names_the_expected_folder(tmp_path):
    root = write_image_folder(tmp_path, 2, 1)
    shutil.rmtree(root / "val")
    with pytest.raises(FileNotFoundError, match=r"image folder split 'val' not found: expected .*/val/ with one"):
        data.build(options(root), device=torch.device("cpu"))


def test_empty_class_folder_is_named(tmp_path):
    root = write_image_folder(tmp_path, 2, 1)
    (root / "train" / "zebra").mkdir()
    with pytest.raises(ValueError, match=r"class folder .*train/zebra/ holds no images"):
        data.build(options(root), device=torch.device("cpu"))


def test_val_classes_must_match_training(tmp_path):
    root = write_image_folder(tmp_path, 2, 1)
    (root / "val" / "fish").rename(root / "val" / "shark")
    with pytest.raises(ValueError, match=r"missing \['fish'\], not in training \['shark'\]"):
        data.build(options(root), device=torch.device("cpu"))


def test_unreadable_image_is_named(tmp_path):
    root = write_image_folder(tmp_path, 2, 1)
    bad = root / "val" / "dog" / "broken.JPEG"
    bad.write_bytes(b"not a jpeg at all")
    built = data.build(options(root, num_workers=0), device=torch.device("cpu"))
    with pytest.raises(ValueError, match=r"unreadable image .*broken.JPEG"):
        list(built.test.batches(8))


def test_alexnet_trains_on_an_image_folder(image_root, make_config, tmp_path):
    cfg = make_config(
        "dataset=imagefolder",
        f"dataset.root={image_root}",
        "dataset.num_workers=2",
        "model=alexnet",
        "model.width=0.25",
        "train.epochs=1",
        "train.batch_size=4",
        "cv.folds=3",
    )
    summary = one_run.run(cfg, tmp_path / "run")
    assert summary["status"] == "completed" and summary["steps"] == 3
    assert summary["final"]["test_loss"] > 0


def test_the_command_line_runs_alexnet_on_a_folder(image_root, tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "llbbench.cli",
            "run",
            "dataset=imagefolder",
            f"dataset.root={image_root}",
            "model=alexnet",
            "model.width=0.25",
            "train.epochs=1",
            "device=cpu",
            f"results_dir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    (summary,) = tmp_path.glob("runs/*/summary.json")
    assert json.loads(summary.read_text())["status"] == "completed"
    config = (summary.parent / "config.yaml").read_text()
    assert "form: auto" in config and "crop: 224" in config
