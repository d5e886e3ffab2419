"""The paper's six networks in both forms: torchvision's parameter counts, and forward/backward at each input size."""

from __future__ import annotations

import pytest
import torch
import torchvision

from llbbench import models

TORCHVISION = {
    "resnet34": lambda: torchvision.models.resnet34(),
    "resnet50": lambda: torchvision.models.resnet50(),
    "resnet152": lambda: torchvision.models.resnet152(),
    "alexnet": lambda: torchvision.models.alexnet(),
    "vgg16": lambda: torchvision.models.vgg16(),
    "googlenet": lambda: torchvision.models.googlenet(aux_logits=False, init_weights=False),
}
PAPER = sorted(TORCHVISION)


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", PAPER)
def test_imagenet_form_at_width_one_has_torchvisions_parameter_count(name):
    with torch.device("meta"):
        ours = models.build(name, 1000, (3, 224, 224))
        theirs = TORCHVISION[name]()
    assert count(ours) == count(theirs)


def test_known_counts_and_vgg_with_batch_norm():
    with torch.device("meta"):
        assert count(models.build("resnet50", 1000, (3, 224, 224))) == 25_557_032
        assert count(models.build("vgg16", 1000, (3, 224, 224), batch_norm=True)) == count(
            torchvision.models.vgg16_bn()
        )


@pytest.mark.parametrize("name", [*PAPER, "smallcnn", "mlp"])
@pytest.mark.parametrize(("form", "size", "width"), [("cifar", 32, 0.125), ("imagenet", 224, 0.0625)])
def test_every_network_runs_forward_and_backward(name, form, size, width):
    torch.manual_seed(0)
    model = models.build(name, 10, (3, size, size), width=width)
    assert models.form_for((3, size, size)) == form
    out = model(torch.randn(2, 3, size, size))
    assert out.shape == (2, 10)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_cifar_form_of_resnet_has_a_3x3_stem_and_no_max_pool():
    model = models.build("resnet34", 10, (3, 32, 32), width=0.125)
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, torch.nn.Identity)
    assert models.build("resnet34", 10, (3, 32, 32), form="imagenet", width=0.125).conv1.kernel_size == (7, 7)


def test_width_scales_the_channels():
    assert models.build("resnet34", 10, (3, 32, 32), width=0.125).conv1.out_channels == 8
    full = count(models.build("resnet34", 10, (3, 32, 32)))
    assert count(models.build("resnet34", 10, (3, 32, 32), width=0.5)) < full / 3.5


def test_dropout_option_reaches_the_classifier():
    model = models.build("alexnet", 10, (3, 32, 32), width=0.125, dropout=0.3)
    assert [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)] == [0.3, 0.3]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "resnet18"}, "unknown model 'resnet18'; valid names: alexnet, googlenet, mlp, resnet152"),
        ({"name": "resnet34", "dropout": 0.5}, "model 'resnet34' has no option dropout; valid: width"),
        ({"name": "vgg16", "form": "mnist"}, "model.form='mnist' is not one of auto, cifar, imagenet"),
        ({"name": "vgg16", "width": 0.0}, "model.width=0.0 must be positive"),
    ],
)
def test_bad_options_get_a_clear_message(kwargs, message):
    name = kwargs.pop("name")
    with pytest.raises(ValueError) as info:
        models.build(name, 10, (3, 32, 32), **kwargs)
    assert message in str(info.value)


def test_alexnet_batch_norm_option_puts_one_norm_after_each_convolution():
    plain = models.build("alexnet", 10, (3, 32, 32), width=0.125)
    normed = models.build("alexnet", 10, (3, 32, 32), width=0.125, batch_norm=True)
    kinds = [type(m).__name__ for m in normed.features]
    assert kinds.count("BatchNorm2d") == kinds.count("Conv2d") == 5
    assert all(kinds[i + 1] == "BatchNorm2d" for i, kind in enumerate(kinds) if kind == "Conv2d")
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in plain.modules())
    assert plain(torch.randn(2, 3, 32, 32)).shape == normed(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_zero_init_residual_starts_every_block_as_the_identity():
    torch.manual_seed(0)
    model = models.build("resnet50", 10, (3, 32, 32), width=0.125, zero_init_residual=True)
    blocks = [m for m in model.modules() if type(m).__name__ == "Bottleneck"]
    assert len(blocks) == 16 and all(torch.all(b.bn3.weight == 0) for b in blocks)
    block = blocks[1]  # no downsample: the output is relu(x) of its input
    x = torch.randn(2, block.conv1.in_channels, 8, 8).relu()
    model.eval()
    assert torch.equal(block(x), x)
    plain = models.build("resnet34", 10, (3, 32, 32), width=0.125)
    assert all(torch.all(m.bn2.weight == 1) for m in plain.modules() if type(m).__name__ == "BasicBlock")
