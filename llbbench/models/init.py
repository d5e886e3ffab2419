"""Weight initialization schemes of the paper's Table 4: default, uniform, normal, Xavier, MSRA."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

_WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
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

    `default` leaves PyTorch's own initialization untouched.
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
