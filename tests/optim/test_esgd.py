"""ESGD against docs/baselines.md: the Hessian-norm estimate, when Hv is computed, BatchNorm, resume."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch
from torch import nn

from llbbench.optim import ESGD, build


def quadratic(seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    a = torch.randn(6, 6, generator=generator, dtype=torch.float64)
    return (a + a.T) * torch.linspace(0.5, 3.0, 6, dtype=torch.float64)[:, None].sqrt()  # rows of varied scale


def symmetric(h: torch.Tensor) -> torch.Tensor:
    return (h + h.T) / 2


def test_estimate_approaches_the_row_norms_of_the_hessian():
    h = symmetric(quadratic())
    x = nn.Parameter(torch.randn(6, dtype=torch.float64))
    opt = ESGD([x], lr=1e-8, update_every=1)
    for _ in range(400):
        loss = 0.5 * x @ h @ x
        opt.zero_grad()
        loss.backward(create_graph=opt.should_create_graph())
        opt.step()
    estimate = (opt.state[x]["sq_sum"] / opt.estimates).sqrt()
    rows = torch.linalg.vector_norm(h, dim=1)
    assert opt.estimates == 400
    assert torch.allclose(estimate, rows, rtol=0.10)


def test_hv_is_exact_on_estimating_steps_and_absent_on_the_others(monkeypatch):
    h = symmetric(quadratic(1))
    x = nn.Parameter(torch.randn(6, dtype=torch.float64))
    opt = ESGD([x], lr=1e-3, update_every=20, warmup=3, seed=7)
    calls = []
    real_grad = torch.autograd.grad

    def counting_grad(*args, **kwargs):
        calls.append(len(calls))
        return real_grad(*args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", counting_grad)
    estimating = []
    for t in range(45):
        create = opt.should_create_graph()
        estimating.append(create)
        loss = 0.5 * x @ h @ x
        opt.zero_grad()
        loss.backward(create_graph=create)
        opt.step()
        if t == 0:  # the first estimate is (Hv)² for v from the optimizer's own seeded stream
            v = torch.randn(6, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
            torch.testing.assert_close(opt.state[x]["sq_sum"], (h @ v) ** 2)
    assert [t for t, e in enumerate(estimating) if e] == [0, 1, 2, 20, 40]  # the warm-up, then every 20
    assert len(calls) == 5 and opt.estimates == 5


def test_the_step_divides_by_the_preconditioner():
    x = nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    opt = ESGD([x], lr=0.5, update_every=1, damping=0.25, weight_decay=0.1)
    loss = 0.5 * (3 * x[0] ** 2 + 4 * x[1] ** 2)  # H = diag(3, 4): (Hv)² = (3v0)², (4v1)²
    loss.backward(create_graph=True)
    v = torch.randn(2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    opt.step()
    gradient = torch.tensor([3.0, -8.0], dtype=torch.float64) + 0.1 * torch.tensor([1.0, -2.0], dtype=torch.float64)
    scale = (torch.tensor([3.0, 4.0], dtype=torch.float64) * v).abs() + 0.25
    torch.testing.assert_close(x.detach(), torch.tensor([1.0, -2.0], dtype=torch.float64) - 0.5 * gradient / scale)


def test_an_estimating_step_without_the_graph_says_what_to_do():
    x = nn.Parameter(torch.ones(3))
    opt = ESGD([x], lr=0.1)
    (x**2).sum().backward()
    with pytest.raises(RuntimeError, match=r"loss.backward\(create_graph=optimizer.should_create_graph\(\)\)"):
        opt.step()


def small_bn_cnn() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 3),
    )


def train(model, opt, steps, start=0):
    losses = []
    for t in range(start, start + steps):
        generator = torch.Generator().manual_seed(t % 4)  # four fixed batches, cycled
        x = torch.randn(16, 3, 8, 8, generator=generator)
        y = torch.randint(0, 3, (16,), generator=generator)
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward(create_graph=opt.should_create_graph())
        opt.step()
        losses.append(loss.item())
    return losses


def test_a_batchnorm_cnn_trains():
    model = small_bn_cnn()
    losses = train(model, ESGD(model.parameters(), lr=0.05, update_every=5), 60)
    assert sum(losses[-8:]) / 8 < 0.8 * sum(losses[:8]) / 8


def test_the_graph_is_released_after_each_step():
    def one_estimating_step() -> weakref.ref:
        model = small_bn_cnn()
        opt = ESGD(model.parameters(), lr=0.05)
        train(model, opt, 1)
        assert all(p.grad.grad_fn is None for p in model.parameters())
        return weakref.ref(model[0].weight)

    gc.collect()
    gc.disable()
    try:
        weight = one_estimating_step()
        assert weight() is None  # freed by reference counting alone: no cycle through param.grad
    finally:
        gc.enable()


def test_resume_from_state_dict_equals_an_uninterrupted_run_bitwise(resume_check):
    def make_optimizer(model):
        return ESGD(model.parameters(), lr=0.05, update_every=4, warmup=2, weight_decay=1e-3)

    opt, opt_resumed = resume_check(small_bn_cnn, make_optimizer, train, 14)
    assert opt_resumed.estimates == opt.estimates == 5  # steps 0, 1 (warm-up), 4, 8, 12


def test_registry_marks_esgd_as_needing_the_graph():
    model = small_bn_cnn()
    opt = build("esgd", model, lr=0.01)
    assert isinstance(opt, ESGD) and opt.update_every == 20 and opt.warmup == 20


def test_the_default_escapes_fig_8s_saddle_where_a_one_sample_estimate_diverges(cifar_root, tmp_path):
    """Fig. 8's perceptron next to its saddle (weights ~ N(0, 0.001²)): with the warm-up ESGD escapes on most
    seeds; a preconditioner from one Hv sample, kept for 20 steps (warmup=0), diverges on most."""
    from llbbench.commands import saddle

    overrides = ["experiment=fig8_saddle", f"dataset.root={cifar_root}", f"results_dir={tmp_path}", "device=cpu",
                 "saddle.steps=25", "saddle.probe=128"]  # fmt: skip
    outcomes = {}
    for warmup in (20, 0):
        runs = [saddle.trajectory(saddle.compose([*overrides, f"optimizer.warmup={warmup}"], "esgd", seed))
                for seed in range(5)]  # fmt: skip
        outcomes[warmup] = [r["status"] == "completed" and r["escape"] is not None for r in runs]
    assert sum(outcomes[20]) >= 4 and sum(outcomes[0]) <= 1, outcomes


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"update_every": 0}, "update_every=0 must be an integer >= 1"),
        ({"warmup": -1}, "warmup=-1 must be an integer >= 0"),
        ({"damping": 0.0}, "damping=0.0 must be > 0"),
    ],
)
def test_invalid_values_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ESGD([nn.Parameter(torch.ones(1))], lr=0.1, **kwargs)
