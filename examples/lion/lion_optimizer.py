"""Lion (Chen et al., 2023, "Symbolic Discovery of Optimization Algorithms"), as an example of a user's optimizer.

Per parameter, with gradient g and momentum m (zero at the start):
    c = beta1 * m + (1 - beta1) * g
    p = p - lr * (sign(c) + weight_decay * p)
    m = beta2 * m + (1 - beta2) * g
"""

from __future__ import annotations

import torch


class Lion(torch.optim.Optimizer):
    def __init__(self, params, lr: float = 1e-4, betas: tuple[float, float] = (0.9, 0.99), weight_decay: float = 0.0):
        if not lr > 0:
            raise ValueError(f"Lion: lr={lr!r} must be above 0")
        if not all(0 <= b < 1 for b in betas) or len(betas) != 2:
            raise ValueError(f"Lion: betas={betas!r} must be two numbers in [0, 1)")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                m = self.state[p].setdefault("exp_avg", torch.zeros_like(p))
                update = (beta1 * m + (1 - beta1) * p.grad).sign_()
                p.add_(update + group["weight_decay"] * p, alpha=-group["lr"])
                m.mul_(beta2).add_(p.grad, alpha=1 - beta2)
        return loss
