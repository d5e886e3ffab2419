"""Shared fixtures: a small CIFAR-format dataset written by the tests, and the real config, composed."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_module
from omegaconf import DictConfig
from PIL import Image

from llbbench.config import CONFIG_PACKAGE

# A suite started in the background by a shell (`make test &`, nohup) inherits SIGINT ignored, and so would every
# command a test starts: Ctrl-C sent by a test would then be ignored. Giving SIGINT a handler here gives the
# commands the default one (an exec resets handled signals, not ignored ones).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# the md5 sums of CIFAR-10's files are remembered across processes (llbbench/data/cifar.py): in a folder of the
# test session (each xdist worker its own, inherited by the processes the tests start), not the user's cache
os.environ.setdefault("LLBBENCH_CACHE", tempfile.mkdtemp(prefix="llbbench-test-cache-"))
# one pytest worker per core (`make test`: -n auto): each worker, and the processes its tests start, one intra-op
# thread; workers of torch's default thread count each oversubscribe the cores, and tiny networks then crawl
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)

FAKE_TRAIN_PER_BATCH = 120
FAKE_TEST = 200


def write_cifar(root: Path, per_batch: int = FAKE_TRAIN_PER_BATCH, test: int = FAKE_TEST, seed: int = 0) -> Path:
    """Write `root/cifar-10-batches-py/` in the official layout, with images a small CNN can learn.

    Each class has its own mean colour and a horizontal stripe at its own height, plus noise.
    """
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)

    def batch(n: int) -> dict:
        labels = rng.integers(0, 10, n)
        images = rng.normal(120, 40, (n, 3, 32, 32))
        for c in range(10):
            images[labels == c] += (np.array([c, 9 - c, (3 * c) % 10])[:, None, None] - 4.5) * 10
            images[labels == c, :, 3 * c : 3 * c + 3, :] += 60
        data = np.clip(images, 0, 255).astype(np.uint8).reshape(n, -1)
        return {"batch_label": "fake", "labels": labels.tolist(), "data": data, "filenames": [""] * n}

    for i in range(1, 6):
        with (folder / f"data_batch_{i}").open("wb") as f:
            pickle.dump(batch(per_batch), f, protocol=2)
    with (folder / "test_batch").open("wb") as f:
        pickle.dump(batch(test), f, protocol=2)
    return root


IMAGE_CLASSES = ("cat", "dog", "fish")


def write_image_folder(root: Path, train_per_class: int = 6, val_per_class: int = 2, seed: int = 0) -> Path:
    """JPEGs and PNGs of mixed sizes and colour modes (RGB, greyscale, CMYK, palette) in ImageNet's layout."""
    rng = np.random.default_rng(seed)
    modes = ("RGB", "L", "CMYK", "P", "RGBA")
    sizes = ((300, 200), (180, 260), (256, 256), (500, 375))
    for split, count in (("train", train_per_class), ("val", val_per_class)):
        for c, name in enumerate(IMAGE_CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                w, h = sizes[(i + c) % len(sizes)]
                pixels = rng.integers(0, 60, (h, w, 3), dtype=np.uint8) + np.uint8(60 * c)
                image = Image.fromarray(pixels, "RGB").convert(modes[(i + c) % len(modes)])
                suffix = ".png" if image.mode in ("P", "RGBA") else ".JPEG"
                image.save(folder / f"{name}_{i}{suffix}")
    return root


@pytest.fixture(scope="session")
def image_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An image folder (train/ and val/, three classes) of JPEGs and PNGs of mixed sizes and colour modes."""
    return write_image_folder(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="session")
def cifar_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root holding a 600-image training set and a 200-image test set in CIFAR-10's format."""
    return write_cifar(tmp_path_factory.mktemp("data"))


@pytest.fixture
def make_config(cifar_root: Path, tmp_path: Path) -> Callable[..., DictConfig]:
    """Compose the real config with `overrides`, pointed at the fake data and shrunk for a quick CPU run."""

    def make(*overrides: str) -> DictConfig:
        base = [
            f"dataset.root={cifar_root}",
            "device=cpu",
            "model.width=0.25",
            "train.epochs=2",
            "train.batch_size=32",
            "train.log_every=2",
            f"results_dir={tmp_path / 'results'}",
        ]
        with initialize_config_module(config_module=CONFIG_PACKAGE, version_base="1.3"):
            return compose("config", overrides=[*base, *overrides])

    return make


def llbbench(
    *args: str, data: Path | None = None, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run the `llbbench` command line in a fresh process, optionally with LLBBENCH_DATA and other variables set."""
    env = {**os.environ, **({"LLBBENCH_DATA": str(data)} if data else {}), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "llbbench.cli", *args], capture_output=True, text=True, env=env, timeout=timeout
    )


def llbbench_background(*args: str, data: Path | None = None) -> subprocess.Popen:
    """Start the `llbbench` command line without waiting for it."""
    env = {**os.environ, "LLBBENCH_DATA": str(data)} if data else dict(os.environ)
    return subprocess.Popen(
        [sys.executable, "-m", "llbbench.cli", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
