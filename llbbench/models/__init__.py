"""The networks of the paper and their initialization schemes, built by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from .init import initialize
from .init import names as init_names
from .smallcnn import smallcnn

__all__ = ["build", "init_names", "initialize", "names", "num_parameters"]

_NETWORKS: dict[str, Callable[..., nn.Module]] = {"smallcnn": smallcnn}


def names() -> list[str]:
    """The network names `build` knows."""
    return sorted(_NETWORKS)


def build(name: str, num_classes: int, input_shape: tuple[int, ...], **options: Any) -> nn.Module:
    """Network `name` for inputs of `input_shape` (C, H, W) and `num_classes` outputs."""
    try:
        factory = _NETWORKS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(names())}") from None
    return factory(num_classes, input_shape, **options)


def num_parameters(model: nn.Module) -> int:
    """The number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
