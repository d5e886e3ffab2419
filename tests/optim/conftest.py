"""What the optimizer tests share: the resume check (a resumed run equals an uninterrupted one)."""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest
import torch
from torch import nn

Train = Callable[..., object]  # train(model, optimizer, steps, start=0)


def resumed_equals_straight(
    make_model: Callable[[], nn.Module],
    make_optimizer: Callable[[nn.Module], torch.optim.Optimizer],
    train: Train,
    steps: int,
) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
    """Train `steps` steps straight through, and half of them, a `state_dict` round trip through bytes, then the
    rest; assert that both end with bitwise equal weights and return (straight optimizer, resumed optimizer)."""
    straight = make_model()
    opt_straight = make_optimizer(straight)
    train(straight, opt_straight, steps)

    half = steps // 2
    first = make_model()
    opt_first = make_optimizer(first)
    train(first, opt_first, half)
    buffer = io.BytesIO()
    torch.save({"model": first.state_dict(), "optimizer": opt_first.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer)

    resumed = make_model()
    with torch.no_grad():
        for p in resumed.parameters():
            p.normal_()  # the loaded state, not the seed, must give the weights
    resumed.load_state_dict(saved["model"])
    opt_resumed = make_optimizer(resumed)
    opt_resumed.load_state_dict(saved["optimizer"])
    train(resumed, opt_resumed, steps - half, start=half)

    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    return opt_straight, opt_resumed


@pytest.fixture
def resume_check() -> Callable[..., tuple[torch.optim.Optimizer, torch.optim.Optimizer]]:
    return resumed_equals_straight
