"""Each initialization scheme's weight statistics on a large layer, against its formula."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from llbbench.models import build, init_names, initialize


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


def _layers(model: nn.Module, kind: type[nn.Module]) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, kind)]


def _fan_out(conv: nn.Conv2d) -> int:
    return conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]


def _fan_in(layer: nn.Module) -> int:
    return layer.weight[0].numel()


def test_default_is_each_architectures_reference_initialization():
    """ResNet and VGG: Kaiming fan-out convs (VGG: N(0, 0.01²) linear layers, biases 0); GoogLeNet: N(0, 0.01²)
    truncated; AlexNet: PyTorch's layer default, as torchvision builds them. Checked on the largest layers."""
    torch.manual_seed(0)
    shape = (3, 32, 32)
    resnet = initialize(build("resnet34", 10, shape, width=0.5), "default")
    vgg = initialize(build("vgg16", 10, shape, width=0.5, batch_norm=True), "default")
    googlenet = initialize(build("googlenet", 10, shape, width=0.5), "default")
    alexnet = initialize(build("alexnet", 10, shape, width=0.5), "default")
    for model in (resnet, vgg):
        conv = max(_layers(model, nn.Conv2d), key=lambda m: m.weight.numel())
        assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / _fan_out(conv)), rel=0.02)
        assert all(torch.all(n.weight == 1) and torch.all(n.bias == 0) for n in _layers(model, nn.BatchNorm2d))
    for linear in _layers(vgg, nn.Linear):
        assert linear.weight.std().item() == pytest.approx(0.01, rel=0.05)
        assert torch.all(linear.bias == 0)
    for layer in (*_layers(googlenet, nn.Conv2d)[-1:], *_layers(googlenet, nn.Linear)):
        assert layer.weight.std().item() == pytest.approx(0.01, rel=0.05)
    for layer in (*_layers(alexnet, nn.Conv2d), *_layers(alexnet, nn.Linear)):
        bound = 1 / math.sqrt(_fan_in(layer))  # kaiming_uniform(a=√5): U(−1/√fan_in, 1/√fan_in)
        assert layer.weight.abs().max().item() <= bound
        assert layer.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)
