"""Datasets, stratified subsets and folds, and batching.

CIFAR-10 lives on the run's device as one uint8 tensor and a mini-batch is a slice of a per-epoch permutation
(no DataLoader workers). ImageNet and other image folders are decoded in DataLoader workers. Both kinds of
split offer the same `num_batches` / `batches` / `take`, so the training loop does not tell them apart.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from . import fetch, predecoded
from .cifar import NUM_CLASSES as CIFAR10_CLASSES
from .cifar import cifar10_fingerprint, load_cifar10
from .classes import selection
from .folder import FolderSplit, folder_fingerprint, scan_split
from .predecoded import PredecodedSplit
from .tensors import TensorSplit, normalize

__all__ = [
    "Data",
    "FolderSplit",
    "PredecodedSplit",
    "Split",
    "TensorSplit",
    "build",
    "check_fingerprint",
    "epoch_order",
    "fingerprint",
    "fold_indices",
    "names",
    "normalize",
    "stratified_subset",
]

Split = TensorSplit | FolderSplit | PredecodedSplit
_DATASETS = ("cifar10", "imagefolder", "imagenet", "imagenette", "imagewoof")  # all but CIFAR-10: image folders
FORMATS = ("folder", "predecoded")  # an image folder's `dataset.format`: decode JPEGs per batch, or read arrays
UNAVAILABLE = "unavailable"  # the fingerprint of data that could not be read (the run then says why)


def names() -> list[str]:
    """The dataset names `build` knows."""
    return list(_DATASETS)


def fingerprint(options: dict[str, Any]) -> str:
    """What the data of dataset `options` is, cheaply: part of every run's identity, so that two different
    datasets at one path-free config never share a run directory. CIFAR-10: the files' checksums (downloaded
    first when missing and `download` is on); an image folder: its class list and every file's path and size.
    Raises `FileNotFoundError`/`ValueError` as loading would."""
    name = options["name"]
    if name not in _DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(_DATASETS)}")
    if name == "cifar10":
        return cifar10_fingerprint(options["root"], download=options.get("download", False))
    fetch.ensure(options)
    root = Path(options["root"])
    splits = (options["train_split"], options["test_split"])
    select = selection(options.get("classes"))
    return _folder_fingerprint(root.resolve(), splits, select, _folder_state(root, splits))


def check_fingerprint(options: dict[str, Any]) -> None:
    """The data at `options["root"]` must be what `options["fingerprint"]` (computed when the config was
    resolved, and part of the run's identity) says; else `ValueError`."""
    found = fingerprint(options)
    if options.get("fingerprint") != found:
        raise ValueError(
            f"the data at dataset.root={options['root']} is not what this run's identity was computed from "
            f"(dataset.fingerprint={options.get('fingerprint')!r}, found {found!r}): it changed while the run "
            "started, or dataset.fingerprint was set by hand (it is computed from the data; leave it out)"
        )


def _folder_state(root: Path, splits: tuple[str, ...]) -> tuple[int, ...]:
    """Modification times of the split and class folders: they change when files are added, removed or renamed."""
    folders = [root / split for split in splits if (root / split).is_dir()]
    folders += [c for split in folders for c in split.iterdir() if c.is_dir()]
    return tuple(folder.stat().st_mtime_ns for folder in sorted(folders))


@functools.lru_cache(maxsize=16)
def _folder_fingerprint(
    root: Path, splits: tuple[str, ...], select: tuple[str, ...] | None, state: tuple[int, ...]
) -> str:
    return folder_fingerprint(root, splits, select)


@dataclass(frozen=True)
class Data:
    """The splits of one run: train, validation (None when `fold` is none) and the official test split."""

    name: str
    train: Split
    val: Split | None
    test: Split
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one input sample, e.g. (3, 32, 32)."""
        return self.train.sample_shape


def build(
    options: dict[str, Any],
    *,
    device: torch.device,
    fold: int | None = None,
    folds: int = 5,
    cv_seed: int = 0,
) -> Data:
    """Dataset `options["name"]` with its options: load it, take its stratified `subset`, split off `fold`.

    Folds are stratified over the (subset of the) training split and depend only on it, `folds` and `cv_seed`.
    """
    name = options["name"]
    if name not in _DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(_DATASETS)}")
    if fold is not None and not 0 <= fold < folds:
        raise ValueError(f"fold={fold} is out of range: use 0..{folds - 1} (cv.folds={folds}) or none")
    if name == "cifar10":
        train, test, num_classes = _cifar10(options, device)
    else:
        train, test, num_classes = _image_folder(options, device)
    for option in ("subset", "test_subset"):  # every class needs an image of its own in every split
        if options.get(option) is not None and options[option] < num_classes:
            raise ValueError(f"dataset.{option}={options[option]} is smaller than the {num_classes} classes: some "
                             f"classes would have no image; use at least {num_classes} or null")  # fmt: skip
    if options.get("subset") is not None:
        if fold is not None and options["subset"] < num_classes * folds:
            raise ValueError(
                f"dataset.subset={options['subset']} is too small for {num_classes} classes in {folds} folds: "
                f"use at least {num_classes * folds} (classes × cv.folds) or null"
            )
        train = train.take(stratified_subset(train.labels.cpu(), options["subset"]))
    if options.get("test_subset") is not None:
        test = test.take(stratified_subset(test.labels.cpu(), options["test_subset"], "dataset.test_subset"))
    val = None
    if fold is not None:
        parts = fold_indices(train.labels.cpu(), folds, cv_seed)
        val = train.take(parts[fold])
        train = train.take(torch.cat([p for i, p in enumerate(parts) if i != fold]).sort().values)
    return Data(name, train, val, test, num_classes)


def _statistics(options: dict[str, Any], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    mean = torch.tensor(options["mean"], dtype=torch.float32, device=device).view(-1, 1, 1)
    std = torch.tensor(options["std"], dtype=torch.float32, device=device).view(-1, 1, 1)
    return mean, std


def _cifar10(options: dict[str, Any], device: torch.device) -> tuple[TensorSplit, TensorSplit, int]:
    train_x, train_y, test_x, test_y = load_cifar10(options["root"], download=options.get("download", False))
    mean, std = _statistics(options, device)
    train = TensorSplit(train_x.to(device), train_y.to(device), mean, std)
    return train, TensorSplit(test_x.to(device), test_y.to(device), mean, std), CIFAR10_CLASSES


def _image_folder(options: dict[str, Any], device: torch.device) -> tuple[Split, Split, int]:
    fmt = options.get("format", "folder")
    if fmt not in FORMATS:
        raise ValueError(f"dataset.format={fmt!r} is not one of {', '.join(FORMATS)}")
    if fmt == "predecoded":
        return predecoded.load(options, fingerprint(options), device, *_statistics(options, device))
    fetch.ensure(options)
    root, select = Path(options["root"]), selection(options.get("classes"))
    classes, train_paths, train_labels, _ = scan_split(root, options["train_split"], select=select)
    _, test_paths, test_labels, _ = scan_split(root, options["test_split"], classes, select)
    mean, std = _statistics(options, device)
    shared = {
        "mean": mean,
        "std": std,
        "device": device,
        "resize": options["resize"],
        "crop": options["crop"],
        "num_workers": options["num_workers"],
    }
    train = FolderSplit(tuple(train_paths), torch.tensor(train_labels), **shared)
    return train, FolderSplit(tuple(test_paths), torch.tensor(test_labels), **shared), len(classes)


def stratified_subset(labels: torch.Tensor, n: int, option: str = "dataset.subset") -> torch.Tensor:
    """Indices of the first `n` samples of each class in proportion to the class sizes, in stored order.

    Quotas follow the largest-remainder rule, so they add up to exactly `n`.
    """
    total = len(labels)
    if not 0 < n <= total:
        raise ValueError(f"{option}={n} must lie in 1..{total} (the size of the split) or be null")
    classes, counts = labels.unique(return_counts=True)
    exact = counts.double() * n / total
    quota = exact.floor().long()
    remainder_order = (exact - quota).argsort(descending=True, stable=True)
    quota[remainder_order[: n - int(quota.sum())]] += 1
    keep = [(labels == c).nonzero().flatten()[:q] for c, q in zip(classes.tolist(), quota.tolist(), strict=True)]
    return torch.cat(keep).sort().values


def fold_indices(labels: torch.Tensor, folds: int, seed: int) -> list[torch.Tensor]:
    """`folds` disjoint, stratified index sets covering all samples; fold sizes differ by at most one.

    Each class's samples are shuffled with `seed` and dealt round-robin to the folds, class after class,
    so the split depends only on the labels, `folds` and `seed`.
    """
    if folds < 2:
        raise ValueError(f"cv.folds={folds} must be at least 2")
    if len(labels) < folds:
        raise ValueError(f"cv.folds={folds} is more than the {len(labels)} training samples")
    generator = torch.Generator().manual_seed(seed)
    dealt = []
    for c in labels.unique().tolist():
        members = (labels == c).nonzero().flatten()
        dealt.append(members[torch.randperm(len(members), generator=generator)])
    order = torch.cat(dealt)
    owner = torch.arange(len(order)) % folds
    return [order[owner == i].sort().values for i in range(folds)]


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The training order of `epoch` (a CPU index tensor): depends only on (n, seed, epoch)."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=generator)
