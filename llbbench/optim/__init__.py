"""The paper's optimizers behind one registry.

`build(name, model, **hparams)` returns a ready optimizer for any registered name; `names()` lists them.
Each entry is an `OptimizerSpec`: a small frozen record of what the optimizer is, its default
hyper-parameters, named presets (`torch`, and `tf1` for the paper-era TensorFlow 1.x values of
docs/baselines.md) and capability flags that tell a training loop how to drive it. Adding an optimizer means
writing its class and calling `register` once; an optimizer from outside llbbench comes in without either
(`plugins`): a config naming its class (`_target_`), or an installed package's `llbbench.optimizers` entry point.

This package imports nothing else of llbbench, so it can be lifted into any training loop.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from types import MappingProxyType
from typing import Any

import torch
from torch import nn

from .esgd import ESGD
from .llb import LLbSGD, NonFiniteLoss, layer_groups
from .pathsgd import PathSGD, path_kappa

__all__ = [
    "BUILTIN",
    "ESGD",
    "FLAGS",
    "META_KEYS",
    "LLbSGD",
    "NonFiniteLoss",
    "OptimizerSpec",
    "PathSGD",
    "backward_and_step",
    "build",
    "code_fingerprint",
    "current_lrs",
    "from_config",
    "get",
    "layer_groups",
    "names",
    "path_kappa",
    "register",
    "register_target",
]

BASE_PRESET = "torch"
BUILTIN = "llbbench"  # the `source` of llbbench's own optimizers
FLAGS = ("needs_loss", "needs_create_graph", "needs_model", "layerwise")
META_KEYS = ("name", "preset", "_target_", "label", *FLAGS)  # a config entry's keys that are not hyper-parameters
_NOT_KEYWORDS = ("params", "model", "input_shape")  # a factory's arguments the registry fills, never a config


@dataclass(frozen=True)
class OptimizerSpec:
    """One registered optimizer: how to build it, its defaults, and what a training loop must give it.

    `factory(params, **hparams)` builds the optimizer. `presets` maps a preset name to the values that
    differ from `defaults`; the base preset `torch` is always available. The capability flags:
    - `needs_loss`: `step(loss=...)` must receive the mini-batch loss;
    - `needs_create_graph`: the optimizer's `should_create_graph()` says whether the next `backward` must
      keep the graph (`loss.backward(create_graph=...)`);
    - `needs_model`: the factory takes `model=` and `input_shape=` keywords;
    - `layerwise`: the factory takes one param group per layer (`layer_groups(model)`), not a flat list.

    Beside `defaults`, every other keyword the factory's signature takes with a default (`extras`: e.g. Adam's
    `amsgrad`) is a valid hyper-parameter, at the factory's own default unless given. `source` says where the
    optimizer comes from: llbbench (`BUILTIN`), a config's `_target_`, or an installed plug-in; `target` is the
    import path of a class named by a config.
    """

    name: str
    factory: Callable[..., torch.optim.Optimizer]
    description: str
    defaults: Mapping[str, Any]
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    needs_loss: bool = False
    needs_create_graph: bool = False
    needs_model: bool = False
    layerwise: bool = False
    source: str = BUILTIN
    target: str | None = None
    extras: Mapping[str, Any] = field(init=False, repr=False, compare=False, default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "defaults", MappingProxyType(dict(self.defaults)))
        extras = {k: v for k, v in keyword_defaults(self.factory).items() if k not in self.defaults}
        object.__setattr__(self, "extras", MappingProxyType(extras))
        presets = {BASE_PRESET: {}, **{k: MappingProxyType(dict(v)) for k, v in self.presets.items()}}
        for preset, values in presets.items():
            unknown = sorted(set(values) - set(self.defaults))
            if unknown:
                raise ValueError(f"preset {preset!r} of optimizer {self.name!r} sets unknown {unknown}")
        object.__setattr__(self, "presets", MappingProxyType(presets))

    def hparams(self, preset: str = BASE_PRESET, **overrides: Any) -> dict[str, Any]:
        """The hyper-parameters for `preset`, with every non-None override applied."""
        if preset not in self.presets:
            raise ValueError(
                f"unknown preset {preset!r} for optimizer {self.name!r}; valid presets: {sorted(self.presets)}"
            )
        values = {**self.defaults, **self.presets[preset]}
        unknown = sorted(set(overrides) - set(values) - set(self.extras))
        if unknown:
            raise ValueError(
                f"optimizer {self.name!r} has no hyper-parameter {', '.join(map(repr, unknown))}; "
                f"valid: {sorted({*values, *self.extras})} (and 'preset')"
            )
        values.update({k: _tuple_if_list(v) for k, v in overrides.items() if v is not None})
        return values

    def keywords(self, preset: str = BASE_PRESET) -> dict[str, Any]:
        """Every valid hyper-parameter at `preset`'s value: `hparams(preset)`, then the `extras` at their defaults."""
        return {**self.hparams(preset), **{k: v for k, v in self.extras.items() if k not in self.defaults}}

    @property
    def external(self) -> bool:
        """Whether the optimizer's code is not llbbench's own (its code is then part of a run's identity)."""
        return self.source != BUILTIN


def keyword_defaults(factory: Callable[..., Any]) -> dict[str, Any]:
    """The keywords `factory` takes beside the parameters (and the model), each at its default (None where it has
    none); a default of 0 on an argument annotated float is 0.0, so that a config may set it to 0.9."""
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: only `defaults` are valid
        return {}
    found = {}
    for p in parameters:
        if p.name in _NOT_KEYWORDS or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD, p.POSITIONAL_ONLY):
            continue
        default = None if p.default is p.empty else p.default
        if isinstance(default, int) and not isinstance(default, bool) and "float" in str(p.annotation):
            default = float(default)
        found[p.name] = default
    return found


_REGISTRY: dict[str, OptimizerSpec] = {}


def register(spec: OptimizerSpec) -> OptimizerSpec:
    """Add an optimizer to the registry (a name may be registered once)."""
    if spec.name in _REGISTRY:
        raise ValueError(f"optimizer {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def names() -> list[str]:
    """The registered optimizer names (installed plug-ins' included), sorted."""
    load_plugins()
    return sorted(_REGISTRY)


def get(name: str) -> OptimizerSpec:
    """The registry entry for `name`; an unknown name raises `ValueError` listing the valid ones."""
    if name not in _REGISTRY:
        load_plugins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown optimizer {name!r}; valid names: {', '.join(names())}") from None


def from_config(options: Mapping[str, Any]) -> tuple[OptimizerSpec, str, dict[str, Any]]:
    """The registry entry that a config's optimizer entry names (a `_target_` class is registered on first
    sight), its preset, and its hyper-parameters as the config gives them (None: the preset's value)."""
    name, target = options.get("name"), options.get("_target_")
    flags = {flag: options[flag] for flag in FLAGS if options.get(flag) is not None}
    if target is not None:
        spec = register_target(name, target, **flags)
    elif flags:
        raise ValueError(
            f"optimizer {name!r} sets {', '.join(sorted(flags))}: the capability flags belong to an optimizer a "
            "config names by _target_ (llbbench's own set theirs in the registry)"
        )
    else:
        spec = get(str(name))
    return spec, options.get("preset") or BASE_PRESET, {k: v for k, v in options.items() if k not in META_KEYS}


def build(
    name: str,
    model: nn.Module,
    *,
    preset: str = BASE_PRESET,
    input_shape: tuple[int, ...] | None = None,
    **hparams: Any,
) -> torch.optim.Optimizer:
    """A ready optimizer `name` over `model`'s trainable parameters.

    `hparams` override the preset's values; a value of None keeps the preset's. `input_shape` (one
    sample, e.g. (3, 32, 32)) is passed on only to optimizers that need the model.
    """
    spec = get(name)
    values = spec.hparams(preset, **hparams)
    if spec.layerwise:
        params: Iterable = layer_groups(model)
    else:
        params = [p for p in model.parameters() if p.requires_grad]
    if spec.needs_model:
        values.update(model=model, input_shape=input_shape)
    return spec.factory(params, **values)


def current_lrs(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """Each layer's (or param group's) current learning rate, by name, for logging.

    Optimizers with per-layer rates expose `layer_lrs()`; for the others the groups' `lr` is the rate.
    """
    layer_lrs = getattr(optimizer, "layer_lrs", None)
    if callable(layer_lrs):
        return layer_lrs()
    return {group.get("name", f"group{i}"): float(group["lr"]) for i, group in enumerate(optimizer.param_groups)}


def backward_and_step(spec: OptimizerSpec, optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    """`loss.backward()` and `optimizer.step()` as the registry's capability flags say: the one contract a
    training loop follows for every optimizer (gradients are expected to be zeroed before)."""
    create_graph = spec.needs_create_graph and optimizer.should_create_graph()
    with warnings.catch_warnings():
        # an optimizer that needs the graph drops it in step(): the reference cycle torch warns of does not last
        warnings.filterwarnings("ignore", "Using backward\\(\\) with create_graph=True")
        loss.backward(create_graph=create_graph)
    if spec.needs_loss:
        optimizer.step(loss=loss.detach())
    else:
        optimizer.step()


def _tuple_if_list(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


from .plugins import code_fingerprint, load_plugins, register_target  # noqa: E402 (they use the registry above)

# --- the six torch.optim baselines (docs/baselines.md), with PyTorch's defaults and the paper-era values ---

register(
    OptimizerSpec(
        name="sgd",
        factory=torch.optim.SGD,
        description="plain stochastic gradient descent (torch.optim.SGD, no momentum)",
        defaults={"lr": 1e-3, "weight_decay": 0.0},
        presets={"tf1": {}},
    )
)
register(
    OptimizerSpec(
        name="nag",
        factory=partial(torch.optim.SGD, nesterov=True),
        description="SGD with Nesterov momentum 0.9 (torch.optim.SGD(nesterov=True))",
        defaults={"lr": 1e-3, "momentum": 0.9, "weight_decay": 0.0},
        presets={"tf1": {}},
    )
)
register(
    OptimizerSpec(
        name="adagrad",
        factory=torch.optim.Adagrad,
        description="Adagrad (torch.optim.Adagrad)",
        defaults={"lr": 1e-2, "eps": 1e-10, "initial_accumulator_value": 0.0, "weight_decay": 0.0},
        presets={"tf1": {"initial_accumulator_value": 0.1}},
    )
)
register(
    OptimizerSpec(
        name="adam",
        factory=torch.optim.Adam,
        description="Adam with L2 weight decay (torch.optim.Adam)",
        defaults={"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0},
        presets={"tf1": {}},
    )
)
register(
    OptimizerSpec(
        name="adadelta",
        factory=torch.optim.Adadelta,
        description="Adadelta (torch.optim.Adadelta)",
        defaults={"lr": 1.0, "rho": 0.9, "eps": 1e-6, "weight_decay": 0.0},
        presets={"tf1": {"lr": 1e-3, "rho": 0.95, "eps": 1e-8}},
    )
)
register(
    OptimizerSpec(
        name="rmsprop",
        factory=torch.optim.RMSprop,
        description="RMSProp (torch.optim.RMSprop)",
        defaults={"lr": 1e-2, "alpha": 0.99, "eps": 1e-8, "weight_decay": 0.0},
        presets={"tf1": {"alpha": 0.9, "eps": 1e-10}},
    )
)


# --- LLb-SGD (docs/llb-sgd.md) ---

register(
    OptimizerSpec(
        name="llb",
        factory=LLbSGD,
        description="LLb-SGD: one learning rate per layer, decayed by the layer's variation and the loss",
        defaults={
            "lr": 0.1,
            "weight_decay": 0.0,
            "xi": 1.0,
            "threshold": 0.0,
            "direction": "gate",
            "conv_norm": "kernel_fro",
            "fc_norm": "l1_mean",
            "loss_ema": 0.0,
            "min_lr_ratio": 1e-6,
            "max_lr_ratio": 1.0,
            "groups": "layer",
            "foreach": None,
        },
        presets={"tf1": {}},
        needs_loss=True,
        layerwise=True,
    )
)


# --- the two baselines no library ships (docs/baselines.md) ---

register(
    OptimizerSpec(
        name="esgd",
        factory=ESGD,
        description="equilibrated SGD: preconditioned by sqrt(E[(Hv)^2]), Hv estimated every update_every steps",
        defaults={"lr": 0.1, "update_every": 20, "warmup": 20, "damping": 1e-4, "weight_decay": 0.0, "seed": 0},
        presets={"tf1": {}},
        needs_create_graph=True,
    )
)
register(
    OptimizerSpec(
        name="pathsgd",
        factory=PathSGD,
        description="Path-SGD: each weight's step divided by its path factor kappa, computed from the model",
        defaults={
            "lr": 1e-3,
            "momentum": 0.0,
            "weight_decay": 0.0,
            "update_every": 1,
            "normalize": "layer",
            "kappa_floor": 1e-12,
            "kappa_relative_floor": 1e-3,
        },
        presets={"tf1": {}},
        needs_model=True,
    )
)
