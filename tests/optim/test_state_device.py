"""After `load_state_dict`, every optimizer's state — its optimizer-wide state under a string key included — is on
its parameters' device (a checkpoint saved on one device, resumed on another). The CPU stands in for the saving
device and PyTorch's `meta` device for the loading one."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from llbbench import optim
from llbbench.optim.common import tensors_in, to_device

SHARED_KEYS = {"llb": "llb", "esgd": "esgd", "pathsgd": "pathsgd"}


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))


@pytest.mark.parametrize("name", sorted(SHARED_KEYS))
def test_state_lands_on_the_parameters_device_after_loading(name):
    saved_on = model()
    options = {"update_every": 1} if name in ("esgd", "pathsgd") else {}
    opt = optim.build(name, saved_on, input_shape=(3, 6, 6), lr=0.01, **options)
    spec = optim.get(name)
    for t in range(3):
        generator = torch.Generator().manual_seed(t)
        x, y = torch.randn(8, 3, 6, 6, generator=generator), torch.randint(0, 3, (8,), generator=generator)
        loss = nn.functional.cross_entropy(saved_on(x), y)
        opt.zero_grad()
        optim.backward_and_step(spec, opt, loss)
    state = opt.state_dict()
    shared = tensors_in(state["state"][SHARED_KEYS[name]])
    # the test moves something (ESGD's shared state is counts and its generator's byte state)
    assert any(t.is_floating_point() for t in shared) is (name != "esgd")
    loaded_on = model().to("meta")
    resumed = optim.build(name, loaded_on, input_shape=(3, 6, 6), lr=0.01, **options)
    resumed.load_state_dict(state)
    for t in tensors_in(resumed.state[SHARED_KEYS[name]]):
        assert t.device.type == ("meta" if t.is_floating_point() else "cpu")  # a generator state stays a CPU tensor
    for p in loaded_on.parameters():
        for t in tensors_in(dict(resumed.state.get(p, {}))):
            if t.is_floating_point():
                assert t.device.type == "meta"


def test_to_device_moves_floating_tensors_in_nested_containers_only():
    value = {
        "a": [torch.ones(2), None, (torch.zeros(1, dtype=torch.float64),)],
        "rng": torch.zeros(4, dtype=torch.uint8),
    }
    moved = to_device(value, torch.device("meta"))
    assert moved["a"][0].device.type == "meta" and moved["a"][2][0].dtype == torch.float64
    assert moved["a"][1] is None and isinstance(moved["a"][2], tuple)
    assert moved["rng"].device.type == "cpu"
