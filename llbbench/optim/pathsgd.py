"""Path-SGD (Neyshabur, Salakhutdinov & Srebro, 2015), as docs/baselines.md describes it.

The path-normalized direction of weight e is ∂L/∂w_e / κ_e, where κ_e sums, over every input→output path
through edge e, the product of the other edges' squared weights. The step puts it on SGD's scale
(`normalize`): `layer` (default) scales each parameter's path direction to its plain gradient's norm, at every
step; `first` multiplies every direction by one global ratio r = ‖g‖/‖g/κ‖ fixed at the first step (what the
authors' code intends); `every` recomputes that ratio with every κ; `none` is the bare rule w_e ← w_e − η·g/κ,
whose rate is not on SGD's scale (κ is ~1e6–1e8 on a BatchNorm ResNet). κ comes from autograd: the network is
run on its squared weights and biases, made positive-linear (every activation is then non-negative, so ReLU is
the identity; dropout off; BatchNorm becomes the per-channel scale (γ/σ)² without shift; max-pool is kept; an
average pool's weights 1/(window size) are squared like every other weight), on an all-ones input of the real
input size, in float64; the gradient of the summed output with respect to the squared parameters is κ. Shared
(conv) weights sum over their edges by themselves. κ is clamped below at `kappa_floor` and, in each parameter,
at `kappa_relative_floor` times that parameter's median κ: a branch whose BatchNorm γ starts at zero
(zero-initialized residual branches) has a κ that collapses towards 0 after the first step.

BatchNorm γ/β and parameters on no path get plain SGD at η.

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

from .common import averaged_over_workers, check_values, distributed, load_shared_state

__all__ = ["NORMALIZE", "PathSGD", "path_kappa"]

_GLOBAL = "pathsgd"  # key of the optimizer-wide state: step count, κ and the ratio (float64, out of dtype casting)
NORMALIZE = ("layer", "first", "every", "none")
_ADAPTIVE = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)
_POOLS = (nn.AvgPool2d, nn.AvgPool3d)


def path_kappa(
    model: nn.Module, input_shape: tuple[int, ...], floor: float = 1e-12, relative_floor: float = 0.0
) -> dict[str, torch.Tensor | None]:
    """κ for every parameter of `model` by name (float64); None for BatchNorm parameters and parameters on no
    input→output path. κ is clamped below at `floor` and, in each parameter, at `relative_floor` × that
    parameter's median κ (0: no relative floor). Average pooling must be a module (nn.AvgPool2d/3d,
    nn.AdaptiveAvgPool*d) for its weights to be squared."""
    norms = {name for name, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
    squared: dict[str, torch.Tensor] = {}
    for name, param in model.named_parameters():
        if name.rpartition(".")[0] not in norms:
            squared[name] = param.detach().double().square().requires_grad_(True)
    overrides = _batchnorm_as_scales(model, norms)
    modes = {m: m.training for m in model.modules()}
    hooks = [m.register_forward_hook(_squared_pool) for m in model.modules() if isinstance(m, (*_ADAPTIVE, *_POOLS))]
    unsupported = [type(m).__name__ for m in model.modules() if isinstance(m, (nn.AvgPool1d, nn.LPPool1d, nn.LPPool2d))]
    if unsupported:
        raise ValueError(f"PathSGD cannot square the weights of {sorted(set(unsupported))}: use nn.AvgPool2d/3d or "
                         "nn.AdaptiveAvgPool*d")  # fmt: skip
    model.eval()
    try:
        ones = torch.ones((1, *input_shape), dtype=torch.float64, device=_device(model))
        with torch.enable_grad():
            output = functional_call(model, {**squared, **overrides}, (ones,), strict=False)
            grads = torch.autograd.grad(output.sum(), list(squared.values()), allow_unused=True)
    finally:
        for hook in hooks:
            hook.remove()
        for module, training in modes.items():
            module.training = training
    kappa: dict[str, torch.Tensor | None] = dict.fromkeys(name for name, _ in model.named_parameters())
    found = [(name, grad) for name, grad in zip(squared, grads, strict=True) if grad is not None]
    if not found:
        return kappa
    on_a_path = torch.stack([(grad > 0).any() for _, grad in found]).tolist()  # one host sync
    for (name, grad), positive in zip(found, on_a_path, strict=True):
        if positive:
            low = grad.median().mul(relative_floor).clamp_min(floor) if relative_floor else floor
            kappa[name] = grad.clamp_min(low)
    return kappa


def _batchnorm_as_scales(model: nn.Module, norms: set[str]) -> dict[str, torch.Tensor]:
    """Buffers and parameters that make each BatchNorm of `norms` the per-channel scale (γ/σ)², without shift."""
    variances = {}
    for owner in sorted(norms):
        bn = model.get_submodule(owner)
        if bn.running_var is None or bn.weight is None:
            raise ValueError(f"PathSGD needs affine BatchNorm layers with running statistics; {owner!r} is not")
        variances[owner] = bn.running_var.double()
    if variances and distributed():
        variances = dict(zip(variances, averaged_over_workers(list(variances.values())), strict=True))
    overrides = {}
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
    return overrides


def _squared_pool(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
    """An average pool's output with its weights 1/d squared: Σx/d² = (Σx/d)/d, d each window's divisor."""
    (x,) = inputs
    if isinstance(module, _ADAPTIVE):
        # adaptive windows: [floor(i·n/m), ceil((i+1)·n/m)) along each pooled dimension
        sizes = []
        for n, m in zip(x.shape[-output.dim() + 2 :], output.shape[2:], strict=True):
            i = torch.arange(m, device=x.device)
            sizes.append((torch.div((i + 1) * n + m - 1, m, rounding_mode="floor") - i * n // m).to(x.dtype))
        divisor = sizes[0]
        for size in sizes[1:]:
            divisor = divisor[..., None] * size
        return output / divisor
    # nn.AvgPool2d/3d: the divisor of each window is (its valid count) / (the pool of ones)
    ones = torch.ones_like(x[:1, :1])
    function = nn.functional.avg_pool2d if isinstance(module, nn.AvgPool2d) else nn.functional.avg_pool3d
    args = (module.kernel_size, module.stride, module.padding, module.ceil_mode)
    summed = function(ones, *args, count_include_pad=True, divisor_override=1)
    mean = function(ones, *args, count_include_pad=module.count_include_pad, divisor_override=module.divisor_override)
    return output * (mean / summed)


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


class PathSGD(torch.optim.Optimizer):
    """Path-normalized SGD: each weight's gradient is divided by its path factor κ_e, computed from `model`, and
    the result put on SGD's scale (`normalize`).

    Args:
        params: the model's parameters (or param groups over them).
        lr: η.
        model: the network whose paths define κ.
        input_shape: the shape of one input sample, e.g. (3, 32, 32).
        momentum: heavy-ball momentum on the path-normalized direction (0: none).
        weight_decay: λ, added to the gradient (L2).
        update_every: steps between two computations of κ (the first step computes it).
        normalize: `layer`: each parameter's path direction scaled to its gradient's norm, every step;
            `first`: one global ratio r = ‖g‖/‖g/κ‖ at the first step, kept; `every`: r recomputed with every
            κ; `none`: no ratio (the bare rule η/κ).
        kappa_floor: the lower clamp of κ (products over a deep network can underflow).
        kappa_relative_floor: κ is also clamped below at this times its parameter's median κ (0: not).
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
        normalize: str = "layer",
        kappa_floor: float = 1e-12,
        kappa_relative_floor: float = 1e-3,
    ) -> None:
        check_values(
            "PathSGD",
            (
                ("lr", lr, lr > 0, "> 0"),
                ("momentum", momentum, 0 <= momentum < 1, "in [0, 1)"),
                ("weight_decay", weight_decay, weight_decay >= 0, ">= 0"),
                ("update_every", update_every, isinstance(update_every, int) and update_every >= 1, "an integer >= 1"),
                ("normalize", normalize, normalize in NORMALIZE, f"one of {', '.join(NORMALIZE)}"),
                ("kappa_floor", kappa_floor, kappa_floor > 0, "> 0"),
                ("kappa_relative_floor", kappa_relative_floor, 0 <= kappa_relative_floor < 1, "in [0, 1)"),
            ),
        )
        if model is None or input_shape is None:
            raise ValueError("PathSGD needs the model and the input shape of one sample (model=..., input_shape=...)")
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay})
        self.model = model
        self.input_shape = tuple(input_shape)
        self.update_every = update_every
        self.normalize = normalize
        self.kappa_floor = kappa_floor
        self.kappa_relative_floor = kappa_relative_floor
        self._names = [name for name, _ in model.named_parameters()]
        self._index = {id(p): i for i, (_, p) in enumerate(model.named_parameters())}
        unknown = [p for g in self.param_groups for p in g["params"] if id(p) not in self._index]
        if unknown:
            raise ValueError(f"PathSGD: {len(unknown)} parameter(s) do not belong to the given model")

    def kappa(self) -> list[torch.Tensor | None]:
        """κ of the model's parameters in `named_parameters` order (None: plain SGD), as last computed."""
        return list(self.state[_GLOBAL].get("kappa", []))

    def ratio(self) -> float:
        """The global ratio r of `first` / `every` (1.0 before the first step and in the other modes)."""
        return float(self.state[_GLOBAL].get("ratio", 1.0))

    def kappa_ranges(self) -> dict[str, list[float]]:
        """[min, max] of κ per parameter that has one, by name, as last computed (for the run's record)."""
        kappa = self.kappa()
        present = [(name, k) for name, k in zip(self._names, kappa, strict=True) if k is not None] if kappa else []
        if not present:
            return {}
        extremes = torch.stack([torch.stack([k.min(), k.max()]) for _, k in present]).tolist()  # one host sync
        return {
            name: [float(f"{lo:.4g}"), float(f"{hi:.4g}")]
            for (name, _), (lo, hi) in zip(present, extremes, strict=True)
        }

    def record(self) -> dict[str, Any]:
        """What a run records of this optimizer in its summary: κ's range per parameter (as last computed) and,
        with a global ratio, the ratio."""
        record: dict[str, Any] = {"kappa_range": self.kappa_ranges()}
        if self.normalize in ("first", "every"):
            record["ratio"] = float(f"{self.ratio():.6g}")
        return record

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
        refreshed = step % self.update_every == 0 or "kappa" not in shared
        if refreshed:
            kappa = path_kappa(self.model, self.input_shape, self.kappa_floor, self.kappa_relative_floor)
            shared["kappa"] = list(kappa.values())
        kappa = shared["kappa"]
        members = [
            (group, p, kappa[self._index[id(p)]]) for group in self.param_groups for p in group["params"]
            if p.grad is not None
        ]  # fmt: skip
        directions = [p.grad.add(p, alpha=g["weight_decay"]) if g["weight_decay"] else p.grad for g, p, _ in members]
        scaled = [d if k is None else d / k.to(d.dtype) for d, (_, _, k) in zip(directions, members, strict=True)]
        if self.normalize in ("first", "every") and (
            (refreshed and self.normalize == "every") or "ratio" not in shared
        ):
            shared["ratio"] = _ratio(
                [d for d, (_, _, k) in zip(directions, members, strict=True) if k is not None],
                [s for s, (_, _, k) in zip(scaled, members, strict=True) if k is not None],
            )
        ratio = shared.get("ratio")
        for direction, plain, (group, p, k) in zip(scaled, directions, members, strict=True):
            if k is not None and self.normalize == "layer":
                direction = direction * _ratio([plain], [direction]).to(direction.dtype)
            elif k is not None and ratio is not None:
                direction = direction * ratio.to(direction.dtype)
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


def _ratio(plain: list[torch.Tensor], scaled: list[torch.Tensor]) -> torch.Tensor:
    """‖plain‖ / ‖scaled‖ over all tensors (float64, on their device; 1 when either norm is 0 or there are none)."""
    if not plain:
        return torch.tensor(1.0, dtype=torch.float64)
    norms = [torch.linalg.vector_norm(torch.stack([t.double().norm() for t in ts])) for ts in (plain, scaled)]
    ratio = norms[0] / norms[1]
    return torch.where(torch.isfinite(ratio) & (ratio > 0), ratio, torch.ones_like(ratio))
