"""The optimizer registry: names, defaults, presets, capability flags, clear errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from llbbench import optim


@pytest.fixture
def model():
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))


def test_names_lists_the_registered_optimizers():
    assert {"sgd", "nag", "adagrad", "adam", "adadelta", "rmsprop"} <= set(optim.names())


@pytest.mark.parametrize("name", optim.names())
def test_every_optimizer_builds_and_steps_as_its_flags_say(model, name):
    """The training loop's contract: the capability flags alone say how to drive an optimizer."""
    opt = optim.build(name, model, input_shape=(4,), lr=0.01)
    before = [p.detach().clone() for p in model.parameters()]
    spec = optim.get(name)
    optim.backward_and_step(spec, opt, model(torch.randn(5, 4)).pow(2).sum())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


@pytest.mark.parametrize(
    ("name", "cls", "expected"),
    [
        ("sgd", torch.optim.SGD, {"momentum": 0, "nesterov": False}),
        ("nag", torch.optim.SGD, {"momentum": 0.9, "nesterov": True}),
        ("adagrad", torch.optim.Adagrad, {"eps": 1e-10, "initial_accumulator_value": 0.0}),
        ("adam", torch.optim.Adam, {"betas": (0.9, 0.999), "eps": 1e-8}),
        ("adadelta", torch.optim.Adadelta, {"lr": 1.0, "rho": 0.9, "eps": 1e-6}),
        ("rmsprop", torch.optim.RMSprop, {"alpha": 0.99, "eps": 1e-8}),
    ],
)
def test_torch_preset_gives_pytorch_defaults(model, name, cls, expected):
    opt = optim.build(name, model)
    assert isinstance(opt, cls)
    for key, value in expected.items():
        assert opt.defaults[key] == value


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("adagrad", {"initial_accumulator_value": 0.1}),
        ("adadelta", {"lr": 1e-3, "rho": 0.95, "eps": 1e-8}),
        ("rmsprop", {"alpha": 0.9, "eps": 1e-10}),
        ("adam", {"betas": (0.9, 0.999), "eps": 1e-8}),
    ],
)
def test_tf1_preset_gives_the_paper_era_values(model, name, expected):
    opt = optim.build(name, model, preset="tf1")
    for key, value in expected.items():
        assert opt.defaults[key] == value


def test_explicit_values_beat_the_preset_and_none_keeps_it(model):
    opt = optim.build("adadelta", model, preset="tf1", lr=0.5, rho=None)
    assert opt.defaults["lr"] == 0.5 and opt.defaults["rho"] == 0.95


def test_lists_from_yaml_become_tuples(model):
    assert optim.build("adam", model, betas=[0.8, 0.9]).defaults["betas"] == (0.8, 0.9)


def test_unknown_name_lists_the_valid_ones(model):
    with pytest.raises(ValueError, match=r"unknown optimizer 'adamw'; valid names: adadelta, adagrad, adam, "):
        optim.build("adamw", model)


def test_unknown_hyperparameter_and_preset_are_refused(model):
    with pytest.raises(ValueError, match=r"optimizer 'adam' has no hyper-parameter 'momentum'; valid: \["):
        optim.build("adam", model, momentum=0.9)
    with pytest.raises(ValueError, match=r"unknown preset 'keras' for optimizer 'adam'"):
        optim.build("adam", model, preset="keras")


def test_registering_twice_is_refused():
    with pytest.raises(ValueError, match="already registered"):
        optim.register(optim.get("sgd"))


def test_spec_is_frozen_and_its_defaults_read_only():
    spec = optim.get("adam")
    with pytest.raises(AttributeError):
        spec.name = "other"
    with pytest.raises(TypeError):
        spec.defaults["lr"] = 1.0


def test_current_lrs_reads_the_groups(model):
    opt = optim.build("sgd", model, lr=0.3)
    assert optim.current_lrs(opt) == {"group0": 0.3}
