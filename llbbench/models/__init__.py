"""The networks of the paper and their initialization schemes, built by name.

Each network has an ImageNet form (torchvision's architecture, 224×224 inputs) and a CIFAR form (32×32 inputs);
`form="auto"` picks by the input size. `width` scales every layer's channel count (for CPU-scale runs).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from torch import nn

from .alexnet import AlexNet
from .googlenet import GoogLeNet
from .init import init_options, initialize
from .init import names as init_names
from .mlp import MLP
from .resnet import resnet
from .smallcnn import smallcnn
from .vgg import VGG16

__all__ = [
    "FORMS",
    "NetworkSpec",
    "build",
    "form_for",
    "init_names",
    "init_options",
    "initialize",
    "names",
    "num_parameters",
    "options",
]

FORMS = ("auto", "cifar", "imagenet")
SMALL_INPUT = 64  # inputs up to this many pixels a side get the CIFAR form


@dataclass(frozen=True)
class NetworkSpec:
    """One registered network: `factory(num_classes, in_channels, cifar, **options)` and its options' defaults.

    `form` (cifar | imagenet | auto) is an option of every network; `options` lists the others."""

    name: str
    factory: Callable[..., nn.Module]
    options: Mapping[str, Any]

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))


_REGISTRY: dict[str, NetworkSpec] = {}


def register(name: str, factory: Callable[..., nn.Module], **options: Any) -> None:
    """Add network `name`, built by `factory(num_classes, in_channels, cifar, **options)`."""
    if name in _REGISTRY:
        raise ValueError(f"network {name!r} is already registered")
    _REGISTRY[name] = NetworkSpec(name, factory, options)


register("smallcnn", lambda num_classes, in_channels, cifar, **o: smallcnn(num_classes, in_channels, **o), width=1.0)
register("mlp", lambda num_classes, in_channels, cifar, **o: MLP(num_classes, in_channels, **o), width=1.0, hidden=256)
for _depth in ("resnet34", "resnet50", "resnet152"):
    register(
        _depth,
        lambda num_classes, in_channels, cifar, _d=_depth, **o: resnet(_d, num_classes, in_channels, cifar, **o),
        width=1.0,
        zero_init_residual=False,
    )
for _name, _cls, _extra in (
    ("alexnet", AlexNet, {"dropout": 0.5, "batch_norm": False}),
    ("vgg16", VGG16, {"dropout": 0.5, "batch_norm": False}),
    ("googlenet", GoogLeNet, {"dropout": 0.4}),
):
    register(
        _name,
        lambda num_classes, in_channels, cifar, _c=_cls, **o: _c(num_classes, in_channels, cifar=cifar, **o),
        width=1.0,
        **_extra,
    )


def names() -> list[str]:
    """The network names `build` knows."""
    return sorted(_REGISTRY)


def _spec(name: str) -> NetworkSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(names())}") from None


def options(name: str) -> dict[str, Any]:
    """Network `name`'s options and their defaults, `form` included."""
    return {"form": "auto", **_spec(name).options}


def form_for(input_shape: tuple[int, ...], form: str = "auto") -> str:
    """`cifar` or `imagenet`: as asked, or, for `auto`, by the input's size."""
    if form not in FORMS:
        raise ValueError(f"model.form={form!r} is not one of {', '.join(FORMS)}")
    if form != "auto":
        return form
    return "cifar" if max(input_shape[1:]) <= SMALL_INPUT else "imagenet"


def build(name: str, num_classes: int, input_shape: tuple[int, ...], form: str = "auto", **options: Any) -> nn.Module:
    """Network `name` for inputs of `input_shape` (C, H, W) and `num_classes` outputs."""
    spec = _spec(name)
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        raise ValueError(f"model {name!r} has no option {', '.join(unknown)}; valid: {', '.join(spec.options)}")
    cifar = form_for(input_shape, form) == "cifar"
    return spec.factory(num_classes, input_shape[0], cifar, **options)


def num_parameters(model: nn.Module) -> int:
    """The number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
