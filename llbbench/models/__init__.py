"""The networks of the paper and their initialization schemes, built by name.

Each network has an ImageNet form (torchvision's architecture, 224×224 inputs) and a CIFAR form (32×32 inputs);
`form="auto"` picks by the input size. `width` scales every layer's channel count (for CPU-scale runs).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import partial
from typing import Any

from torch import nn

from .alexnet import AlexNet
from .googlenet import GoogLeNet
from .init import initialize
from .init import names as init_names
from .resnet import resnet
from .smallcnn import smallcnn
from .vgg import VGG16

__all__ = ["FORMS", "build", "form_for", "init_names", "initialize", "names", "num_parameters"]

FORMS = ("auto", "cifar", "imagenet")
SMALL_INPUT = 64  # inputs up to this many pixels a side get the CIFAR form

# name -> factory(num_classes, in_channels, cifar, **options)
_NETWORKS: dict[str, Callable[..., nn.Module]] = {
    "smallcnn": lambda num_classes, in_channels, cifar, width=1.0: smallcnn(num_classes, in_channels, width),
    "resnet34": partial(resnet, "resnet34"),
    "resnet50": partial(resnet, "resnet50"),
    "resnet152": partial(resnet, "resnet152"),
    "alexnet": lambda num_classes, in_channels, cifar, **o: AlexNet(num_classes, in_channels, cifar=cifar, **o),
    "vgg16": lambda num_classes, in_channels, cifar, **o: VGG16(num_classes, in_channels, cifar=cifar, **o),
    "googlenet": lambda num_classes, in_channels, cifar, **o: GoogLeNet(num_classes, in_channels, cifar=cifar, **o),
}
_OPTIONS = {
    "smallcnn": ("width",),
    "resnet34": ("width",),
    "resnet50": ("width",),
    "resnet152": ("width",),
    "alexnet": tuple(inspect.signature(AlexNet).parameters)[2:-1],
    "vgg16": tuple(inspect.signature(VGG16).parameters)[2:-1],
    "googlenet": tuple(inspect.signature(GoogLeNet).parameters)[2:-1],
}


def names() -> list[str]:
    """The network names `build` knows."""
    return sorted(_NETWORKS)


def form_for(input_shape: tuple[int, ...], form: str = "auto") -> str:
    """`cifar` or `imagenet`: as asked, or, for `auto`, by the input's size."""
    if form not in FORMS:
        raise ValueError(f"model.form={form!r} is not one of {', '.join(FORMS)}")
    if form != "auto":
        return form
    return "cifar" if max(input_shape[1:]) <= SMALL_INPUT else "imagenet"


def build(name: str, num_classes: int, input_shape: tuple[int, ...], form: str = "auto", **options: Any) -> nn.Module:
    """Network `name` for inputs of `input_shape` (C, H, W) and `num_classes` outputs."""
    if name not in _NETWORKS:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(names())}")
    unknown = sorted(set(options) - set(_OPTIONS[name]))
    if unknown:
        raise ValueError(f"model {name!r} has no option {', '.join(unknown)}; valid: {', '.join(_OPTIONS[name])}")
    cifar = form_for(input_shape, form) == "cifar"
    return _NETWORKS[name](num_classes, input_shape[0], cifar, **options)


def num_parameters(model: nn.Module) -> int:
    """The number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
