"""LLb-SGD: layer-wise learning-rate SGD (Zheng et al., 2019), as docs/llb-sgd.md reconstructs it.

Each layer k (a Conv2d or Linear module with the BatchNorm that directly follows it) has its own rate

    α_k^t = clip(α_k^{t−1} · exp(−ξ · δ^t · F_k^t), min_lr_ratio · α0, α0),

where F_k^t is how much the layer's weight moved in the last step (conv: the mean Frobenius norm of the
change of its output kernels; fc: the mean absolute change of its weights) and δ^t is a descent direction
shared by all layers, computed from the mini-batch loss (default `gate`: δ^t = L^t when the loss did not fall
by at least the threshold τ, else 0). The step is plain SGD with the layer's rate: W ← W − α_k^t (g + λW).

The variation is the norm of the update when it is applied, so no copy of the old weights is kept: the extra
cost over SGD is one norm per layer per step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from .common import averaged_over_workers, check_values, distributed, load_shared_state

__all__ = ["CONV_NORMS", "DIRECTIONS", "FC_NORMS", "GROUPINGS", "KINDS", "LLbSGD", "NonFiniteLoss", "layer_groups"]

DIRECTIONS = ("gate", "signed", "loss", "extrapolate", "ratio")
GROUPINGS = ("layer", "global")
SHARED = ("direction", "threshold", "loss_ema", "groups")  # options of the loss (or of all layers): not per group
CONV_NORMS = ("kernel_fro", "kernel_rms", "relative")
FC_NORMS = ("l1_mean", "relative")
KINDS = ("conv", "fc", "other")
_EPS = 1e-12  # guards the relative norms against an all-zero weight
_GLOBAL = "llb"  # key of the optimizer-wide state (loss history), beside the per-parameter entries


class NonFiniteLoss(ValueError):
    """The loss given to `LLbSGD.step` is NaN or infinite: the training has diverged."""


def layer_groups(model: nn.Module) -> list[dict[str, Any]]:
    """One param group per Conv2d/Linear module of `model`, for `LLbSGD`.

    A group holds the module's weight (first) and bias, plus the parameters of a BatchNorm that directly
    follows it (the next module in registration order, with as many features as the layer has outputs). It
    carries `name` (the module's path) and `kind` (`conv` or `fc`). Every other trainable parameter forms a
    group of its own, of kind `other`. No parameter appears twice; frozen parameters are left out.
    """
    groups: list[dict[str, Any]] = []
    seen: set[int] = set()
    previous: tuple[nn.Module, dict[str, Any]] | None = None  # the last leaf module, if it opened a group

    def take(*params: torch.Tensor | None) -> list[torch.Tensor]:
        fresh = [p for p in params if p is not None and p.requires_grad and id(p) not in seen]
        seen.update(id(p) for p in fresh)
        return fresh

    for name, module in model.named_modules():
        if next(module.children(), None) is not None:
            continue  # containers: their leaves come next
        group = None
        if isinstance(module, (nn.Conv2d, nn.Linear)) and module.weight.requires_grad and id(module.weight) not in seen:
            kind = "conv" if isinstance(module, nn.Conv2d) else "fc"
            group = {"params": take(module.weight, module.bias), "name": name, "kind": kind}
            groups.append(group)
        elif isinstance(module, nn.modules.batchnorm._BatchNorm) and previous is not None:
            layer, open_group = previous
            outputs = layer.out_channels if isinstance(layer, nn.Conv2d) else layer.out_features
            if outputs == module.num_features:
                open_group["params"] += take(module.weight, module.bias)
        previous = (module, group) if group is not None else None

    for name, param in model.named_parameters():
        if param.requires_grad and id(param) not in seen:
            groups.append({"params": take(param), "name": name, "kind": "other"})
    return groups


class LLbSGD(torch.optim.Optimizer):
    """Layer-wise learning-rate SGD (docs/llb-sgd.md). Every reconstructed choice is an option.

    Args:
        params: `layer_groups(model)`, or plain parameters (each tensor is then its own layer, its kind
            `conv`/`fc`/`other` from its number of dimensions 4/2/other), or param-group dicts (a group's first
            tensor is the weight whose variation sets the rate; `kind` defaults from its dimensions).
        lr: α0, every layer's initial rate; the ceiling of the rates is `max_lr_ratio · lr`. A learning-rate
            scheduler changes `lr`, so it moves the ceiling (and the floor `min_lr_ratio · lr`); a layer's rate is
            clipped into them at the next step.
        weight_decay: λ, added to the gradient of every parameter (L2).
        xi: ξ, the decay term of the rate update.
        threshold: τ of the `gate` direction: the rate decays when the loss fell by less than τ.
        direction: how δ^t follows from the loss: `gate` (δ = L^t · 1[L^{t−1} − L^t < τ]), `signed`
            (L^t · sign(L^t − L^{t−1}); may raise the rate), `loss` (L^t), `extrapolate` (max(0, 2L^t − L^{t−1}))
            or `ratio` (L^t / L^{t−1}).
        conv_norm: variation of a conv layer: `kernel_fro` (mean over output kernels of ‖ΔK_j‖_F),
            `kernel_rms` (each ‖ΔK_j‖_F divided by the square root of the kernel's element count) or
            `relative` (mean of ‖ΔK_j‖_F / ‖K_j‖_F, K_j before the step).
        fc_norm: variation of an fc (and `other`) layer: `l1_mean` (mean |ΔW|) or `relative` (‖ΔW‖_1 / ‖W‖_1).
        loss_ema: β in [0, 1): with β > 0, δ uses the smoothed loss L̃^t = β L̃^{t−1} + (1 − β) L^t.
        min_lr_ratio: the floor of every rate, as a fraction of `lr`.
        max_lr_ratio: the ceiling of every rate, as a fraction of `lr` (1: no rate exceeds α0, the paper's
            reading; above 1 the `signed` direction can raise a rate beyond α0).
        groups: `layer`, one rate per param group (the method); or `global`, the ablation that isolates
            "layer-wise": one rate shared by all groups, updated by the same rule with F the mean of the groups'
            variations (every group must then have the same `lr`, `xi`, `min_lr_ratio` and `max_lr_ratio`).
        foreach: True: the multi-tensor (`torch._foreach_*`) path; False: a plain loop over tensors; None: as
            torch.optim decides, multi-tensor on CUDA, the loop on the CPU (where it measured faster).

    `direction`, `threshold`, `loss_ema` and `groups` concern the loss, which all layers share (or all layers at
    once): they are options of the optimizer, and a param group that sets another value is refused. The loss
    reaches `step` through a closure or `step(loss=...)`; under `torch.distributed` it is averaged across
    workers first, so that every worker keeps the same rates. Every direction assumes a positive loss (as
    cross-entropy is): a non-finite loss raises `NonFiniteLoss`, a non-positive one `ValueError`.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float,
        weight_decay: float = 0.0,
        xi: float = 1.0,
        threshold: float = 0.0,
        direction: str = "gate",
        conv_norm: str = "kernel_fro",
        fc_norm: str = "l1_mean",
        loss_ema: float = 0.0,
        min_lr_ratio: float = 1e-6,
        max_lr_ratio: float = 1.0,
        groups: str = "layer",
        foreach: bool | None = None,
        *,
        sync_free: bool | None = None,
    ) -> None:
        _check_choice("direction", direction, DIRECTIONS)
        _check_choice("groups", groups, GROUPINGS)
        _check_choice("conv_norm", conv_norm, CONV_NORMS)
        _check_choice("fc_norm", fc_norm, FC_NORMS)
        check_values(
            "LLbSGD",
            (
                ("lr", lr, lr > 0, "> 0"),
                ("weight_decay", weight_decay, weight_decay >= 0, ">= 0"),
                ("xi", xi, xi >= 0, ">= 0"),
                ("threshold", threshold, math.isfinite(threshold), "finite"),
                ("loss_ema", loss_ema, 0 <= loss_ema < 1, "in [0, 1)"),
                ("min_lr_ratio", min_lr_ratio, 0 <= min_lr_ratio <= 1, "in [0, 1]"),
                ("max_lr_ratio", max_lr_ratio, math.isfinite(max_lr_ratio) and max_lr_ratio >= 1, ">= 1, finite"),
            ),
        )
        defaults = {"lr": lr, "weight_decay": weight_decay, "xi": xi, "threshold": threshold, "direction": direction,
                    "conv_norm": conv_norm, "fc_norm": fc_norm, "loss_ema": loss_ema, "min_lr_ratio": min_lr_ratio,
                    "max_lr_ratio": max_lr_ratio, "groups": groups, "foreach": foreach}  # fmt: skip
        params = list(params)
        if params and not isinstance(params[0], dict):
            params = [{"params": [p], "name": f"param{i}"} for i, p in enumerate(params)]
        # the loss, its history and δ are float64 tensors on the parameters' device; sync_free=False reads the loss
        # back once a step to check it (finite, positive); None: True on CUDA (no host sync), False on the CPU
        self.sync_free = sync_free
        self._constants: dict[tuple, torch.Tensor] = {}  # per-group values as device tensors, made once
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        params = param_group["params"]
        first = params if isinstance(params, torch.Tensor) else next(iter(params), None)
        if first is None:
            raise ValueError("LLbSGD: a param group needs at least one tensor (its first is the layer's weight)")
        param_group.setdefault("name", f"group{len(self.param_groups)}")
        kind = param_group.setdefault("kind", {4: "conv", 2: "fc"}.get(first.dim(), "other"))
        _check_choice("kind", kind, KINDS)
        for key in ("conv_norm", "fc_norm"):
            if key in param_group:
                _check_choice(key, param_group[key], CONV_NORMS if key == "conv_norm" else FC_NORMS)
        for key in SHARED:
            if key in param_group and param_group[key] != self.defaults[key]:
                raise ValueError(
                    f"LLbSGD: {key} is one value for the whole optimizer (it concerns the loss all layers share), "
                    f"but param group {param_group['name']!r} sets {key}={param_group[key]!r} against the "
                    f"optimizer's {self.defaults[key]!r}: set it once, as an argument of LLbSGD"
                )
        super().add_param_group(param_group)

    def layer_lrs(self) -> dict[str, float]:
        """Each layer's current rate, by layer name (one host sync: for logging, not the hot path)."""
        shared = self.state.get(_GLOBAL, {})
        rates = shared["rates"].tolist() if "rates" in shared else []
        return {
            group["name"]: rates[k] if k < len(rates) else float(group["lr"])
            for k, group in enumerate(self.param_groups)
        }

    def layer_variations(self) -> dict[str, float]:
        """Each layer's variation F_k from its last step, by layer name (0 before the first step)."""
        shared = self.state.get(_GLOBAL, {})
        variations = shared["variations"].tolist() if "variations" in shared else []
        return {
            group["name"]: variations[k] if k < len(variations) else 0.0 for k, group in enumerate(self.param_groups)
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """As torch's, and the optimizer-wide state onto the parameters' device (a resume on another device)."""
        load_shared_state(self, state_dict, _GLOBAL)

    @torch.no_grad()
    def step(
        self, closure: Callable[[], torch.Tensor] | None = None, *, loss: torch.Tensor | float | None = None
    ) -> torch.Tensor | float | None:
        """One step; the mini-batch loss comes from `closure()` or the `loss` keyword."""
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if loss is None:
            raise RuntimeError(
                "LLbSGD.step needs the mini-batch loss: call optimizer.step(loss=loss) or optimizer.step(closure)"
            )
        device = self.param_groups[0]["params"][0].device
        value = self._shared_loss(loss, device)
        if not (self.sync_free if self.sync_free is not None else device.type == "cuda"):
            self._check_loss(float(value))  # the one host sync of the step; on CUDA the rates show a bad loss
        delta = self._direction(value)
        rates = self._new_rates(delta)
        layers = [_Layer.of(group, k) for k, group in enumerate(self.param_groups)]
        active = [layer for layer in layers if layer is not None]
        foreach = self.defaults["foreach"]
        if foreach is None:  # as torch.optim decides: multi-tensor on CUDA; on the CPU the loop is faster
            foreach = rates.device.type == "cuda"
        step = _multi_tensor_step if foreach else _single_tensor_step
        moved = step(active, rates) if active else {}
        zero = torch.zeros((), dtype=torch.float64, device=rates.device)
        variations = torch.stack([moved.get(k, zero) for k in range(len(self.param_groups))])
        self.state[_GLOBAL] = {**self.state[_GLOBAL], "rates": rates, "variations": variations}
        return loss

    def _shared_loss(self, loss: torch.Tensor | float, device: torch.device) -> torch.Tensor:
        """The loss as a float64 scalar on `device`, averaged across workers under torch.distributed (without a
        host sync)."""
        value = torch.as_tensor(loss, dtype=torch.float64).detach().to(device)
        return averaged_over_workers([value])[0] if distributed() else value

    def _check_loss(self, value: float) -> None:
        """Every direction assumes a positive, finite loss: `NonFiniteLoss` or `ValueError` otherwise."""
        direction = self.defaults["direction"]
        if not math.isfinite(value):
            raise NonFiniteLoss(f"LLbSGD: the loss given to step is {value} (direction={direction!r}): diverged")
        if value <= 0:
            raise ValueError(
                f"LLbSGD: the loss given to step is {value}, but direction={direction!r} assumes a positive loss "
                "(as cross-entropy is); a non-positive loss would invert the rule. Shift the loss to be positive."
            )

    def _direction(self, loss: torch.Tensor) -> torch.Tensor:
        """δ^t from the loss history (kept in the optimizer state as float64 tensors), which it then advances."""
        history = self.state[_GLOBAL]
        beta = self.defaults["loss_ema"]
        previous = history.get("loss")  # L^{t−1}, or the smoothed L̃^{t−1} (a float in older checkpoints)
        if previous is not None:
            previous = torch.as_tensor(previous, dtype=torch.float64, device=loss.device)
        current = loss if previous is None or beta == 0 else beta * previous + (1 - beta) * loss
        # a new dict, not an update in place: a state_dict taken earlier stays as it was
        self.state[_GLOBAL] = {**history, "loss": current, "step": history.get("step", 0) + 1}
        if previous is None:
            return torch.zeros((), dtype=torch.float64, device=loss.device)  # first step: δ^1 = 0
        return direction_delta(self.defaults["direction"], current, previous, self.defaults["threshold"])

    def _new_rates(self, delta: torch.Tensor) -> torch.Tensor:
        """α^t = clip(α^{t−1} · exp(−ξ δ F), min_lr_ratio · α0, max_lr_ratio · α0) for every layer at once (float64,
        no sync); with `groups=global`, F is the mean of the groups' variations, so every rate stays the same."""
        groups = self.param_groups
        device = groups[0]["params"][0].device
        shared = self.state[_GLOBAL]

        def per_group(key: str) -> torch.Tensor:  # made once per set of values (a schedule changes `lr`)
            values = tuple(float(g[key]) for g in groups)
            if (key, values, device) not in self._constants:
                if len(self._constants) > 64:
                    self._constants.clear()
                self._constants[(key, values, device)] = torch.tensor(values, dtype=torch.float64, device=device)
            return self._constants[(key, values, device)]

        if self.defaults["groups"] == "global":
            for key in ("lr", "xi", "min_lr_ratio", "max_lr_ratio"):
                if len({g[key] for g in groups}) > 1:
                    raise ValueError(f"LLbSGD: groups='global' shares one rate, but the param groups differ in {key}")
        initial = per_group("lr")
        rates = shared.get("rates", initial[:0]).to(device)
        variations = shared.get("variations", initial[:0]).to(device)
        if len(rates) < len(groups):  # first step, or groups added since: they start at α0 with F = 0
            rates = torch.cat([rates, initial[len(rates) :]])
            variations = torch.cat([variations, torch.zeros_like(initial[len(variations) :])])
        if self.defaults["groups"] == "global":
            variations = variations.mean().expand_as(variations)
        rates = torch.where(delta != 0, rates * torch.exp(-delta * per_group("xi") * variations), rates)
        floor, ceiling = initial * per_group("min_lr_ratio"), initial * per_group("max_lr_ratio")
        return torch.minimum(torch.maximum(rates, floor), ceiling)


def direction_delta(name: str, loss: torch.Tensor, previous: torch.Tensor, threshold: float = 0.0) -> torch.Tensor:
    """δ^t for the (possibly smoothed) loss L^t and its predecessor L^{t−1} (docs/llb-sgd.md, item 4), on float64
    scalars wherever they live (no host sync)."""
    zero = torch.zeros_like(loss)
    if name == "gate":
        return torch.where(previous - loss < threshold, loss, zero)
    if name == "signed":
        return loss * (loss > previous) - loss * (loss < previous)
    if name == "loss":
        return loss
    if name == "extrapolate":
        return torch.clamp_min(2 * loss - previous, 0.0)
    if name == "ratio":
        return loss / torch.clamp_min(previous, _EPS)  # a zero previous loss would divide by zero
    raise ValueError(f"unknown direction {name!r}; valid: {', '.join(DIRECTIONS)}")


class _Layer:
    """One param group as the step sees it: its position, its tensors with gradients, its hyper-parameters."""

    __slots__ = ("grads", "group", "index", "params", "weight_index")

    def __init__(self, group: dict[str, Any], index: int, params: list, grads: list, weight_index: int | None):
        self.group, self.index, self.params, self.grads = group, index, params, grads
        self.weight_index = weight_index  # position of the weight among `params`, None if it has no gradient

    @classmethod
    def of(cls, group: dict[str, Any], index: int) -> _Layer | None:
        weight = group["params"][0]
        pairs = [(p, p.grad) for p in group["params"] if p.grad is not None]
        if not pairs:
            return None
        for _, g in pairs:
            if g.is_sparse:
                raise RuntimeError(f"LLbSGD does not support sparse gradients (layer {group['name']!r})")
        params, grads = map(list, zip(*pairs, strict=True))
        weight_index = next((i for i, p in enumerate(params) if p is weight), None)
        return cls(group, index, params, grads, weight_index)

    @property
    def norm(self) -> str:
        return self.group["conv_norm"] if self.group["kind"] == "conv" else self.group["fc_norm"]

    @property
    def is_conv(self) -> bool:
        return self.group["kind"] == "conv" and self.params[0].dim() >= 2


def _conv_variation(direction: torch.Tensor, weight_before: torch.Tensor | None, norm: str) -> torch.Tensor:
    """The variation of a conv layer per unit rate, from its weight's step direction (a row per output kernel)."""
    kernels = torch.linalg.vector_norm(direction.flatten(1), dim=1)
    if norm == "kernel_rms":
        kernels = kernels / math.sqrt(direction[0].numel())
    elif norm == "relative":
        kernels = kernels / (torch.linalg.vector_norm(weight_before.flatten(1), dim=1) + _EPS)
    return kernels.mean()


def _l1_variation(direction: torch.Tensor, weight_before: torch.Tensor | None, norm: str) -> torch.Tensor:
    """The variation of an fc (or other) layer per unit rate: mean |d|, or ‖d‖_1 / ‖W‖_1."""
    total = torch.linalg.vector_norm(direction, ord=1)
    if norm == "relative":
        return total / (torch.linalg.vector_norm(weight_before, ord=1) + _EPS)
    return total / direction.numel()


# Both paths take the step direction d = g + λW, measure the weight's variation as α·‖d‖ (every norm is
# homogeneous, so this is the norm of the update α·d without forming it), then apply W ← W − α·d.


def _single_tensor_step(layers: list[_Layer], rates: torch.Tensor) -> dict[int, torch.Tensor]:
    """The reference path, a plain loop over layers and tensors; returns each moved layer's variation."""
    variations = {}
    for layer in layers:
        rate = rates[layer.index]
        decay = layer.group["weight_decay"]
        for i, (param, grad) in enumerate(zip(layer.params, layer.grads, strict=True)):
            direction = grad.add(param, alpha=decay) if decay else grad
            if i == layer.weight_index:
                measure = _conv_variation if layer.is_conv else _l1_variation
                variations[layer.index] = rate * measure(direction, param, layer.norm).double()
            param.addcmul_(direction, -rate.to(param.dtype))
    return variations


def _multi_tensor_step(layers: list[_Layer], rates: torch.Tensor) -> dict[int, torch.Tensor]:
    """The same step with multi-tensor (`torch._foreach_*`) arithmetic over all layers at once."""
    params = [p for layer in layers for p in layer.params]
    grads = [g for layer in layers for g in layer.grads]
    neg_rates = (-rates).to(params[0].dtype).unbind()
    param_rates = [neg_rates[layer.index] for layer in layers for _ in layer.params]
    decays = [layer.group["weight_decay"] for layer in layers for _ in layer.params]
    if not any(decays):
        directions = grads
    elif len(set(decays)) == 1:  # the common case: one fused pass for g + λW
        directions = torch._foreach_add(grads, params, alpha=decays[0])
    else:
        directions = torch._foreach_mul(params, decays)
        torch._foreach_add_(directions, grads)

    # each layer's weight: its position among `params`; measured before the step (relative norms read W)
    weights, start = {}, 0
    for layer in layers:
        if layer.weight_index is not None:
            weights[layer.index] = (layer, start + layer.weight_index)
        start += len(layer.params)
    variations = {
        k: _conv_variation(directions[i], params[i], layer.norm) for k, (layer, i) in weights.items() if layer.is_conv
    }
    flat = [(k, layer, i) for k, (layer, i) in weights.items() if not layer.is_conv]
    if flat:
        totals = torch._foreach_norm([directions[i] for _, _, i in flat], 1)
        relative = [(k, i) for k, layer, i in flat if layer.norm == "relative"]
        scales = torch._foreach_norm([params[i] for _, i in relative], 1) if relative else []
        scale_of = {k: scale for (k, _), scale in zip(relative, scales, strict=True)}
        for (k, _, i), total in zip(flat, totals, strict=True):
            variations[k] = total / (scale_of[k] + _EPS) if k in scale_of else total / directions[i].numel()

    torch._foreach_addcmul_(params, directions, param_rates)
    return {k: rates[k] * variation.double() for k, variation in variations.items()}


def _check_choice(label: str, value: Any, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ValueError(f"LLbSGD: {label}={value!r} is not one of {', '.join(valid)}")
