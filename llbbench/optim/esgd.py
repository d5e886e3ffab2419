"""ESGD: equilibrated SGD (Dauphin, de Vries & Bengio, 2015), as docs/baselines.md describes it.

The preconditioner is D = sqrt(E[(Hv)²]) with v ~ N(0, I) and H the Hessian of the mini-batch loss. On each of
the first `warmup` steps, and then every `update_every` steps, ESGD draws v, computes Hv by double backward and
accumulates S += (Hv)², n += 1; every step then moves θ ← θ − lr · (g + λθ) / (sqrt(S/n) + damping). The
warm-up keeps a one-sample D (whose smallest entries are orders of magnitude below the average's) from setting
the first `update_every` steps.

Only the estimating steps need the graph of the gradient: ask `should_create_graph()` before `backward`:

    loss.backward(create_graph=optimizer.should_create_graph())
    optimizer.step()

Under torch.distributed (DistributedDataParallel) every worker draws the same v, and an estimating step averages
Hv and the gradients over the workers itself, so that H is the Hessian of the global batch's loss: run that step's
forward and backward inside the model's `no_sync()` (DDP's reducer does not take double backward). Gradients that
DDP has averaged already come out of that average unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from .common import averaged_over_workers, check_values, distributed, load_shared_state

__all__ = ["ESGD"]

_GLOBAL = "esgd"  # key of the optimizer-wide state: step count, number of estimates, the random stream


class ESGD(torch.optim.Optimizer):
    """Equilibrated SGD with a diagonal Hessian-norm preconditioner, estimated on each of the first `warmup`
    steps and then every `update_every` steps.

    Args:
        params: parameters or param groups.
        lr: the step size ε.
        update_every: steps between two estimates of Hv after the warm-up (the first step always estimates).
        warmup: the first steps, each of which estimates Hv.
        damping: added to sqrt(S/n) before dividing.
        weight_decay: λ, added to the gradient (L2) before preconditioning; H is the loss's Hessian alone.
        seed: seeds the optimizer's own stream of random vectors v, which its state carries, so that a
            resumed run draws the same v as an uninterrupted one.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float,
        update_every: int = 20,
        warmup: int = 20,
        damping: float = 1e-4,
        weight_decay: float = 0.0,
        seed: int = 0,
    ) -> None:
        check_values(
            "ESGD",
            (
                ("lr", lr, lr > 0, "> 0"),
                ("update_every", update_every, isinstance(update_every, int) and update_every >= 1, "an integer >= 1"),
                ("warmup", warmup, isinstance(warmup, int) and warmup >= 0, "an integer >= 0"),
                ("damping", damping, damping > 0, "> 0"),
                ("weight_decay", weight_decay, weight_decay >= 0, ">= 0"),
            ),
        )
        super().__init__(params, {"lr": lr, "damping": damping, "weight_decay": weight_decay})
        self.update_every = update_every
        self.warmup = warmup
        self.seed = seed

    def should_create_graph(self) -> bool:
        """True when the coming step estimates Hv, so its `backward` must keep the graph (`create_graph`)."""
        step = self.state[_GLOBAL].get("step", 0)
        return step < self.warmup or step % self.update_every == 0

    @property
    def estimates(self) -> int:
        """How many Hessian-vector products have been accumulated (n)."""
        return self.state[_GLOBAL].get("estimates", 0)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """As torch's, and the optimizer-wide state onto the parameters' device (a resume on another device)."""
        load_shared_state(self, state_dict, _GLOBAL)

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        """One step. On an estimating step the gradients must carry their graph (`create_graph=True`)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        estimating = self.should_create_graph()
        shared = dict(self.state[_GLOBAL])
        params = [p for group in self.param_groups for p in group["params"] if p.grad is not None]
        if estimating and params:
            self._accumulate(params, shared)
        for group in self.param_groups:
            # a parameter without an estimate yet (no gradient when the last one was taken) waits for the next
            members = [p for p in group["params"] if p.grad is not None and "sq_sum" in self.state[p]]
            if not members:
                continue
            grads = [p.grad for p in members]
            if group["weight_decay"]:
                grads = torch._foreach_add(grads, members, alpha=group["weight_decay"])
            scale = torch._foreach_div([self.state[p]["sq_sum"] for p in members], float(shared["estimates"]))
            torch._foreach_sqrt_(scale)
            torch._foreach_add_(scale, group["damping"])
            torch._foreach_addcdiv_(members, grads, scale, value=-group["lr"])
        shared["step"] = shared.get("step", 0) + 1
        self.state[_GLOBAL] = shared
        return loss

    def _accumulate(self, params: list[torch.Tensor], shared: dict[str, Any]) -> None:
        """S += (Hv)², n += 1, with v ~ N(0, I) from the optimizer's own stream; then release the graph."""
        if any(p.grad.grad_fn is None for p in params):
            raise RuntimeError(
                "ESGD estimates Hv on this step, but the gradients carry no graph: "
                "call loss.backward(create_graph=optimizer.should_create_graph()) before optimizer.step()"
            )
        generator = torch.Generator(device=params[0].device)  # drawn where the parameters are: no copies
        try:
            if "rng" in shared:
                generator.set_state(shared["rng"])
            else:
                generator.manual_seed(self.seed)
        except RuntimeError:  # the state of another device's generator (a resume on another device)
            generator.manual_seed(self.seed + shared.get("estimates", 0))
        vectors = [torch.randn(p.shape, generator=generator, dtype=p.dtype, device=p.device) for p in params]
        shared["rng"] = generator.get_state()
        with torch.enable_grad():
            products = torch.autograd.grad([p.grad for p in params], params, vectors, allow_unused=True)
        if distributed():  # H of the global batch's loss: Hv and (undivided) gradients averaged over workers
            grads = [p.grad.detach() for p in params]
            present = [hv for hv in products if hv is not None]
            averaged = iter(averaged_over_workers([*grads, *present]))
            for p in params:
                p.grad = next(averaged)
            products = tuple(next(averaged) if hv is not None else None for hv in products)
        for p, hv in zip(params, products, strict=True):
            state = self.state[p]
            if "sq_sum" not in state:
                state["sq_sum"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            if hv is not None:
                state["sq_sum"].addcmul_(hv, hv)
            p.grad = p.grad.detach()  # drop the graph: nothing of this step's backward stays alive
        shared["estimates"] = shared.get("estimates", 0) + 1
