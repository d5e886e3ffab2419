"""Weight initialization schemes of the paper's Table 4: default, uniform, normal, Xavier, MSRA."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_WEIGHTED = (*_CONVS, nn.Linear)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm, nn.LayerNorm)


def _uniform(weight, a: float = 0.05) -> None:
    nn.init.uniform_(weight, -a, a)


def _normal(weight, std: float = 0.01) -> None:
    nn.init.normal_(weight, 0.0, std)


def _xavier(weight, gain: float = 1.0) -> None:
    nn.init.xavier_uniform_(weight, gain=gain)


def _msra(weight, conv_mode: str = "fan_out", linear_mode: str = "fan_in") -> None:
    mode = linear_mode if weight.dim() == 2 else conv_mode
    nn.init.kaiming_normal_(weight, mode=mode, nonlinearity="relu")


_SCHEMES: dict[str, Callable[..., None]] = {
    "uniform": _uniform,
    "normal": _normal,
    "xavier": _xavier,
    "msra": _msra,
}


def reference(
    model: nn.Module,
    conv: Callable[[nn.Parameter], None] | None = None,
    linear: Callable[[nn.Parameter], None] | None = None,
    zero_bias: bool = True,
) -> nn.Module:
    """An architecture's own initialization (what `init=default` keeps), as torchvision's model builds it.

    `conv` / `linear` re-draw the weights of conv / linear layers (None leaves PyTorch's layer default);
    a re-drawn layer's bias is zeroed when `zero_bias`; norms get weight 1 and bias 0.
    """
    for module in model.modules():
        scheme = conv if isinstance(module, _CONVS) else linear if isinstance(module, nn.Linear) else None
        if scheme is not None:
            scheme(module.weight)
            if zero_bias and module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, _NORMS) and module.weight is not None:
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    return model


def kaiming_fan_out(weight) -> None:
    """He et al.'s normal initialization with fan-out (torchvision's ResNet and VGG convolutions)."""
    _msra(weight, conv_mode="fan_out")


def truncated_normal(weight, std: float = 0.01) -> None:
    """N(0, std²) truncated to [−2, 2] (torchvision's GoogLeNet)."""
    nn.init.trunc_normal_(weight, 0.0, std, a=-2.0, b=2.0)


def names() -> list[str]:
    """The initialization names `initialize` knows."""
    return ["default", *sorted(_SCHEMES)]


def init_options(name: str) -> dict[str, Any]:
    """The parameters of initialization `name` and their defaults."""
    if name == "default":
        return {}
    try:
        scheme = _SCHEMES[name]
    except KeyError:
        raise ValueError(f"unknown init {name!r}; valid names: {', '.join(names())}") from None
    return {key: p.default for key, p in inspect.signature(scheme).parameters.items() if key != "weight"}


def initialize(model: nn.Module, name: str, **params: Any) -> nn.Module:
    """Re-initialize every conv and linear weight of `model` by scheme `name` (biases 0; norms 1 and 0).

    `default` leaves the network's own initialization untouched (`reference`, applied when it is built).
    """
    if name == "default":
        if params:
            raise ValueError(f"init 'default' takes no parameters, got {', '.join(sorted(params))}")
        return model
    accepted = list(init_options(name))
    scheme = _SCHEMES[name]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(f"init {name!r} has no parameter {', '.join(unknown)}; valid: {', '.join(accepted)}")
    for module in model.modules():
        if isinstance(module, _WEIGHTED):
            scheme(module.weight, **params)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, _NORMS) and module.weight is not None:
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    return model
