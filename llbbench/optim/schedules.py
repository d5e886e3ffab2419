"""Learning-rate schedules for every optimizer (`train.schedule`), stepped once per iteration.

With t = step / steps-per-epoch (fractional epochs) and k = `train.schedule_k`, the rate used at step s (0-based) is
α0 times: `constant` 1; `inverse_time` 1/(1 + k·t); `exponential` e^(−k·t); `cosine` (1 + cos(π·s/(T − 1)))/2,
which reaches 0 at the budget's last step T − 1. They are `torch.optim.lr_scheduler.LambdaLR` factors, so their
state (the step count) travels in checkpoints. For LLb-SGD a schedule moves α0, the ceiling of its layer rates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

SCHEDULES = ("constant", "inverse_time", "exponential", "cosine")


@dataclass(frozen=True)
class ScheduleFactor:
    """The factor of α0 at step s (0-based) of a run of `total_steps` steps, `steps_per_epoch` to an epoch."""

    name: str
    k: float
    steps_per_epoch: int
    total_steps: int

    def __post_init__(self) -> None:
        if self.name not in SCHEDULES:
            raise ValueError(f"train.schedule={self.name!r} is not one of {', '.join(SCHEDULES)}")
        if self.steps_per_epoch < 1 or self.total_steps < 1:
            raise ValueError("a schedule needs at least one step per epoch and one step in all")

    def __call__(self, step: int) -> float:
        t = step / self.steps_per_epoch
        if self.name == "inverse_time":
            return 1.0 / (1.0 + self.k * t)
        if self.name == "exponential":
            return math.exp(-self.k * t)
        if self.name == "cosine":
            last = self.total_steps - 1
            return 0.5 * (1.0 + math.cos(math.pi * min(step, last) / last)) if last > 0 else 1.0
        return 1.0


def build_scheduler(
    optimizer: torch.optim.Optimizer, name: str, k: float, steps_per_epoch: int, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-iteration scheduler for `optimizer`: call its `step()` after each optimizer step."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, ScheduleFactor(name, k, steps_per_epoch, total_steps))
