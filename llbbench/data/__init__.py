"""Datasets as device-resident uint8 tensors, stratified subsets and folds, and batching by slicing.

A dataset that fits in memory lives on the run's device as one uint8 tensor; a mini-batch is a slice of a
per-epoch permutation, normalized on the fly (no DataLoader workers).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from .cifar import NUM_CLASSES as CIFAR10_CLASSES
from .cifar import load_cifar10

__all__ = ["Data", "Split", "build", "epoch_order", "fold_indices", "names", "stratified_subset"]

_DATASETS = ("cifar10",)


def names() -> list[str]:
    """The dataset names `build` knows."""
    return list(_DATASETS)


@dataclass(frozen=True)
class Split:
    """Images (uint8 N×C×H×W) and labels (int64 N) on one device, with the normalization to apply."""

    images: torch.Tensor
    labels: torch.Tensor
    mean: torch.Tensor  # C×1×1, float32
    std: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def num_batches(self, batch_size: int, drop_last: bool = False) -> int:
        return len(self) // batch_size if drop_last else -(-len(self) // batch_size)

    def batches(
        self, batch_size: int, order: torch.Tensor | None = None, drop_last: bool = False
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Normalized float32 mini-batches in `order` (indices on the split's device; default: as stored)."""
        for i in range(self.num_batches(batch_size, drop_last)):
            window = slice(i * batch_size, (i + 1) * batch_size)
            index = order[window] if order is not None else window
            yield self.normalize(self.images[index]), self.labels[index]

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        return (images.float().div_(255.0) - self.mean) / self.std


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
        return tuple(self.train.images.shape[1:])


def build(
    name: str,
    *,
    root: str,
    device: torch.device,
    mean: Sequence[float],
    std: Sequence[float],
    fold: int | None = None,
    folds: int = 5,
    cv_seed: int = 0,
    subset: int | None = None,
    download: bool = False,
) -> Data:
    """Load dataset `name`, take its stratified `subset`, split off validation `fold`, move it to `device`."""
    if name not in _DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(_DATASETS)}")
    if fold is not None and not 0 <= fold < folds:
        raise ValueError(f"fold={fold} is out of range: use 0..{folds - 1} (cv.folds={folds}) or none")
    train_x, train_y, test_x, test_y = load_cifar10(root, download=download)
    if subset is not None:
        keep = stratified_subset(train_y, subset)
        train_x, train_y = train_x[keep], train_y[keep]
    mean_t = torch.tensor(mean, dtype=torch.float32, device=device).view(-1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32, device=device).view(-1, 1, 1)

    def split(images: torch.Tensor, labels: torch.Tensor) -> Split:
        return Split(images.to(device), labels.to(device), mean_t, std_t)

    val = None
    if fold is not None:
        parts = fold_indices(train_y, folds, cv_seed)
        val_idx = parts[fold]
        train_idx = torch.cat([p for i, p in enumerate(parts) if i != fold]).sort().values
        val = split(train_x[val_idx], train_y[val_idx])
        train_x, train_y = train_x[train_idx], train_y[train_idx]
    return Data(name, split(train_x, train_y), val, split(test_x, test_y), CIFAR10_CLASSES)


def stratified_subset(labels: torch.Tensor, n: int) -> torch.Tensor:
    """Indices of the first `n` samples of each class in proportion to the class sizes, in stored order.

    Quotas follow the largest-remainder rule, so they add up to exactly `n`.
    """
    total = len(labels)
    if not 0 < n <= total:
        raise ValueError(f"dataset.subset={n} must lie in 1..{total} (the size of the training set) or be null")
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
    generator = torch.Generator().manual_seed(seed)
    dealt = []
    for c in labels.unique().tolist():
        members = (labels == c).nonzero().flatten()
        dealt.append(members[torch.randperm(len(members), generator=generator)])
    order = torch.cat(dealt)
    owner = torch.arange(len(order)) % folds
    return [order[owner == i].sort().values for i in range(folds)]


def epoch_order(n: int, seed: int, epoch: int, device: torch.device) -> torch.Tensor:
    """The training order of `epoch`: a permutation that depends only on (n, seed, epoch)."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=generator).to(device)
