"""Each initialization scheme's weight statistics on a large layer, against its formula."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from llbbench.models import init_names, initialize


def net() -> nn.Sequential:
    torch.manual_seed(0)
    # a large conv (fan_in 256·9 = 2304, fan_out 512·9 = 4608) and a large linear layer (fan_in 1000, fan_out 600)
    return nn.Sequential(nn.Conv2d(256, 512, 3), nn.BatchNorm2d(512), nn.Flatten(), nn.Linear(1000, 600))


def stats(t: torch.Tensor) -> tuple[float, float]:
    return t.mean().item(), t.std().item()


@pytest.mark.parametrize(
    ("name", "params", "conv_std", "linear_std", "bound"),
    [
        ("uniform", {"a": 0.05}, 0.05 / math.sqrt(3), 0.05 / math.sqrt(3), lambda fi, fo: 0.05),
        ("normal", {"std": 0.02}, 0.02, 0.02, None),
        (
            "xavier",
            {"gain": 1.0},
            math.sqrt(6 / (2304 + 4608)) / math.sqrt(3),
            math.sqrt(6 / 1600) / math.sqrt(3),
            lambda fi, fo: math.sqrt(6 / (fi + fo)),
        ),
        ("msra", {}, math.sqrt(2 / 4608), math.sqrt(2 / 1000), None),
    ],
)
def test_weight_statistics_match_the_formula(name, params, conv_std, linear_std, bound):
    model = net()
    with torch.no_grad():
        model[1].weight.fill_(3.0)
        model[3].bias.fill_(1.0)
    initialize(model, name, **params)
    conv, norm, linear = model[0], model[1], model[3]
    for weight, std, fans in ((conv.weight, conv_std, (2304, 4608)), (linear.weight, linear_std, (1000, 600))):
        mean, measured = stats(weight)
        assert abs(mean) < 5 * std / math.sqrt(weight.numel())  # five standard errors
        assert measured == pytest.approx(std, rel=0.01)
        if bound is not None:
            assert weight.abs().max().item() <= bound(*fans)
    assert torch.all(conv.bias == 0) and torch.all(linear.bias == 0)
    assert torch.all(norm.weight == 1) and torch.all(norm.bias == 0)


def test_default_leaves_pytorchs_initialization():
    model, reference = net(), net()
    initialize(model, "default")
    for a, b in zip(model.parameters(), reference.parameters(), strict=True):
        assert torch.equal(a, b)


def test_names_and_bad_input():
    assert init_names() == ["default", "msra", "normal", "uniform", "xavier"]
    with pytest.raises(ValueError, match="unknown init 'he'; valid names: default, msra, normal, uniform, xavier"):
        initialize(net(), "he")
    with pytest.raises(ValueError, match="init 'xavier' has no parameter std; valid: gain"):
        initialize(net(), "xavier", std=0.1)
