"""Signum (Bernstein et al., 2018: signSGD with momentum), packaged as an llbbench plug-in.

Per parameter, with gradient g and momentum m (zero at the start): m = beta * m + (1 - beta) * g, then
p = p - lr * (sign(m) + weight_decay * p).
"""

from __future__ import annotations

import torch

from llbbench.optim import OptimizerSpec


class Signum(torch.optim.Optimizer):
    def __init__(self, params, lr: float = 1e-4, beta: float = 0.9, weight_decay: float = 0.0):
        if not lr > 0 or not 0 <= beta < 1:
            raise ValueError(f"Signum: lr={lr!r} must be above 0 and beta={beta!r} in [0, 1)")
        super().__init__(params, {"lr": lr, "beta": beta, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                m = self.state[p].setdefault("momentum", torch.zeros_like(p))
                m.mul_(group["beta"]).add_(p.grad, alpha=1 - group["beta"])
                p.add_(m.sign() + group["weight_decay"] * p, alpha=-group["lr"])
        return loss


SPEC = OptimizerSpec(
    name="signum",
    factory=Signum,
    description="Signum: signSGD with momentum (Bernstein et al., 2018)",
    defaults={"lr": 1e-4, "beta": 0.9, "weight_decay": 0.0},
)
