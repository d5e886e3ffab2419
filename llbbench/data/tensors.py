"""A dataset that fits in memory: one uint8 tensor on the run's device, batched by slicing a permutation."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

import torch


def batch_count(samples: int, batch_size: int, drop_last: bool = False) -> int:
    """How many mini-batches `samples` make: a last, smaller one counts unless `drop_last`."""
    return samples // batch_size if drop_last else -(-samples // batch_size)


def normalize(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 images to float32, scaled to [0, 1] and standardized per channel."""
    return (images.float().div_(255.0) - mean) / std


@dataclass(frozen=True)
class TensorSplit:
    """Images (uint8 N×C×H×W) and labels (int64 N) on one device, with the normalization to apply."""

    images: torch.Tensor
    labels: torch.Tensor
    mean: torch.Tensor  # C×1×1, float32, on the images' device
    std: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.images.shape[1:])

    def take(self, index: torch.Tensor) -> TensorSplit:
        """The samples at `index`, in that order."""
        index = index.to(self.images.device)
        return replace(self, images=self.images[index], labels=self.labels[index])

    def num_batches(self, batch_size: int, drop_last: bool = False) -> int:
        return batch_count(len(self), batch_size, drop_last)

    def batches(
        self, batch_size: int, order: torch.Tensor | None = None, drop_last: bool = False, skip: int = 0
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Normalized float32 mini-batches in `order` (default: as stored; it may hold a part of the split), from
        batch number `skip` on."""
        if order is not None:
            order = order.to(self.images.device)
        samples = len(order) if order is not None else len(self)
        for i in range(skip, batch_count(samples, batch_size, drop_last)):
            window = slice(i * batch_size, (i + 1) * batch_size)
            index = order[window] if order is not None else window
            yield normalize(self.images[index], self.mean, self.std), self.labels[index]
