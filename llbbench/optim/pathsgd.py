"""Path-SGD (Neyshabur, Salakhutdinov & Srebro, 2015), as docs/baselines.md describes it.

Each weight moves by w_e ← w_e − (η / κ_e) · ∂L/∂w_e, where κ_e sums, over every input→output path through
edge e, the product of the other edges' squared weights. κ comes from autograd: the network is run on its
squared weights and biases, made positive-linear (every activation is then non-negative, so ReLU is the
identity; dropout off; BatchNorm becomes the per-channel scale (γ/σ)² without shift; max-pool is kept), on an
all-ones input of the real input size, in float64; the gradient of the summed output with respect to the
squared parameters is κ. Shared (conv) weights sum over their edges by themselves.

BatchNorm γ/β and parameters on no path get plain SGD.

Under torch.distributed (DistributedDataParallel) every worker has the same weights, but, without synchronised
BatchNorm, running statistics of its own batches: κ then uses their average over the workers, so that every
worker computes the same κ and the replicas stay equal.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from ._checks import averaged_over_workers, check_values, distributed, load_shared_state

__all__ = ["PathSGD", "path_kappa"]

_GLOBAL = "pathsgd"  # key of the optimizer-wide state: step count and κ (float64, kept out of dtype casting)


def path_kappa(model: nn.Module, input_shape: tuple[int, ...], floor: float = 1e-12) -> dict[str, torch.Tensor | None]:
    """κ for every parameter of `model` by name (float64, clamped below at `floor`); None for BatchNorm
    parameters and parameters on no input→output path."""
    norms = {name for name, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
    squared: dict[str, torch.Tensor] = {}
    overrides: dict[str, torch.Tensor] = {}
    for name, param in model.named_parameters():
        owner = name.rpartition(".")[0]
        if owner not in norms:
            squared[name] = param.detach().double().square().requires_grad_(True)
    variances = {}
    for owner in sorted(norms):
        bn = model.get_submodule(owner)
        if bn.running_var is None or bn.weight is None:
            raise ValueError(f"PathSGD needs affine BatchNorm layers with running statistics; {owner!r} is not")
        variances[owner] = bn.running_var.double()
    if variances and distributed():
        variances = dict(zip(variances, averaged_over_workers(list(variances.values())), strict=True))
    for owner in norms:
        bn = model.get_submodule(owner)
        sigma = (variances[owner] + bn.eps).sqrt()
        gamma = bn.weight.detach().double()
        prefix = f"{owner}." if owner else ""
        # eval-mode batch norm computes (x − mean)/σ · w + b: with mean 0, b 0 and w = γ²/σ it is x·(γ/σ)²
        overrides[prefix + "running_mean"] = torch.zeros_like(gamma)
        overrides[prefix + "running_var"] = sigma.square() - bn.eps
        overrides[prefix + "weight"] = gamma.square() / sigma
        overrides[prefix + "bias"] = torch.zeros_like(gamma)
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        ones = torch.ones((1, *input_shape), dtype=torch.float64, device=_device(model))
        with torch.enable_grad():
            output = functional_call(model, {**squared, **overrides}, (ones,), strict=False)
            grads = torch.autograd.grad(output.sum(), list(squared.values()), allow_unused=True)
    finally:
        for module, training in modes.items():
            module.training = training
    kappa: dict[str, torch.Tensor | None] = dict.fromkeys(name for name, _ in model.named_parameters())
    found = [(name, grad) for name, grad in zip(squared, grads, strict=True) if grad is not None]
    on_a_path = torch.stack([(grad > 0).any() for _, grad in found]).tolist() if found else []  # one host sync
    for (name, grad), positive in zip(found, on_a_path, strict=True):
        if positive:
            kappa[name] = grad.clamp_min(floor)
    return kappa


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


class PathSGD(torch.optim.Optimizer):
    """Path-normalized SGD: each weight's step is divided by its path factor κ_e, computed from `model`.

    Args:
        params: the model's parameters (or param groups over them).
        lr: η.
        model: the network whose paths define κ.
        input_shape: the shape of one input sample, e.g. (3, 32, 32).
        momentum: heavy-ball momentum on the path-normalized direction (0: none).
        weight_decay: λ, added to the gradient (L2).
        update_every: steps between two computations of κ (the first step computes it).
        kappa_floor: the lower clamp of κ (products over a deep network can underflow).
    """

    def __init__(
        self,
        params,
        lr: float,
        *,
        model: nn.Module,
        input_shape: tuple[int, ...],
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        update_every: int = 1,
        kappa_floor: float = 1e-12,
    ) -> None:
        check_values(
            "PathSGD",
            (
                ("lr", lr, lr > 0, "> 0"),
                ("momentum", momentum, 0 <= momentum < 1, "in [0, 1)"),
                ("weight_decay", weight_decay, weight_decay >= 0, ">= 0"),
                ("update_every", update_every, isinstance(update_every, int) and update_every >= 1, "an integer >= 1"),
                ("kappa_floor", kappa_floor, kappa_floor > 0, "> 0"),
            ),
        )
        if model is None or input_shape is None:
            raise ValueError("PathSGD needs the model and the input shape of one sample (model=..., input_shape=...)")
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay})
        self.model = model
        self.input_shape = tuple(input_shape)
        self.update_every = update_every
        self.kappa_floor = kappa_floor
        self._index = {id(p): i for i, (_, p) in enumerate(model.named_parameters())}
        unknown = [p for g in self.param_groups for p in g["params"] if id(p) not in self._index]
        if unknown:
            raise ValueError(f"PathSGD: {len(unknown)} parameter(s) do not belong to the given model")

    def kappa(self) -> list[torch.Tensor | None]:
        """κ of the model's parameters in `named_parameters` order (None: plain SGD), as last computed."""
        return list(self.state[_GLOBAL].get("kappa", []))

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """As torch's, and the optimizer-wide state onto the parameters' device (a resume on another device)."""
        load_shared_state(self, state_dict, _GLOBAL)

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        shared: dict[str, Any] = dict(self.state[_GLOBAL])
        step = shared.get("step", 0)
        if step % self.update_every == 0 or "kappa" not in shared:
            shared["kappa"] = list(path_kappa(self.model, self.input_shape, self.kappa_floor).values())
        kappa = shared["kappa"]
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                direction = p.grad.add(p, alpha=group["weight_decay"]) if group["weight_decay"] else p.grad
                k = kappa[self._index[id(p)]]
                if k is not None:
                    direction = direction / k.to(p.dtype)
                if group["momentum"]:
                    state = self.state[p]
                    if "momentum_buffer" not in state:
                        state["momentum_buffer"] = direction.clone()
                    else:
                        state["momentum_buffer"].mul_(group["momentum"]).add_(direction)
                    direction = state["momentum_buffer"]
                p.add_(direction, alpha=-group["lr"])
        shared["step"] = step + 1
        self.state[_GLOBAL] = shared
        return loss
