"""LLb-SGD against docs/llb-sgd.md: hand-computed values, defining properties, paths, resume, distributed."""

from __future__ import annotations

import itertools
import math
import os

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torchvision
from torch import nn

from llbbench.optim import LLbSGD, build, layer_groups
from llbbench.optim.llb import CONV_NORMS, DIRECTIONS, FC_NORMS


def two_layer_net() -> nn.Sequential:
    """One conv (3 kernels of 2×2×2) and one linear layer, as in the hand-computed tests."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 3, 2), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 2 * 2, 2))


def small_cnn() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, bias=False),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    )


# --- layer groups ---------------------------------------------------------------------------------------


def test_layer_groups_attach_a_following_batchnorm_and_name_each_layer():
    model = small_cnn()
    groups = layer_groups(model)
    assert [(g["name"], g["kind"]) for g in groups] == [("0", "conv"), ("3", "conv"), ("7", "fc")]
    assert groups[0]["params"] == [model[0].weight, model[1].weight, model[1].bias]
    assert groups[1]["params"] == [model[3].weight, model[3].bias]


class Odd(nn.Module):
    """A BatchNorm that follows a ReLU, a free parameter, a shared layer and a frozen one."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.act = nn.ReLU()
        self.norm = nn.BatchNorm2d(4)
        self.scale = nn.Parameter(torch.ones(1))
        self.head = nn.Linear(4, 2)
        self.tied = self.head  # the same module twice
        self.frozen = nn.Linear(2, 2)
        self.frozen.requires_grad_(False)


def test_layer_groups_cover_every_trainable_parameter_once():
    model = Odd()
    groups = layer_groups(model)
    kinds = {g["name"]: g["kind"] for g in groups}
    assert kinds == {"conv": "conv", "head": "fc", "norm.weight": "other", "norm.bias": "other", "scale": "other"}
    grouped = [p for g in groups for p in g["params"]]
    assert len(grouped) == len({id(p) for p in grouped})
    assert {id(p) for p in grouped} == {id(p) for p in model.parameters() if p.requires_grad}


def test_layer_groups_of_a_resnet_put_every_batchnorm_with_its_conv():
    model = torchvision.models.resnet18(num_classes=10)
    groups = layer_groups(model)
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(groups) == len(layers) == 21
    assert all(len(g["params"]) == 3 for g in groups if g["kind"] == "conv")  # weight, BN weight, BN bias
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


# --- hand-computed values -------------------------------------------------------------------------------


def test_three_steps_by_hand():
    """Default options; gradients fixed so every number can be worked out on paper.

    conv gradient: kernel 0 has Frobenius norm 5 (a 3 and a 4), kernels 1 and 2 are zero; fc gradient: ±1.
    Losses 2.0, 2.5 (rose: the gate opens, δ = 2.5), 1.0 (fell: δ = 0).
    Step 1: α = 0.1 for both; F_conv = (0.1·5 + 0 + 0)/3 = 1/6, F_fc = 0.1.
    Step 2: α_conv = 0.1·exp(−2.5/6), α_fc = 0.1·exp(−0.25); F_conv = α_conv·5/3, F_fc = α_fc.
    Step 3: δ = 0, the rates stay.
    """
    model = two_layer_net()
    conv, fc = model[0], model[3]
    w_conv, b_conv, w_fc = conv.weight.detach().clone(), conv.bias.detach().clone(), fc.weight.detach().clone()
    g_conv = torch.zeros_like(conv.weight)
    g_conv[0, 0, 0, 0], g_conv[0, 1, 1, 1] = 3.0, 4.0
    g_bias = torch.tensor([1.0, 0.0, -2.0])
    g_fc = torch.ones_like(fc.weight)
    g_fc[1] = -1.0
    opt = LLbSGD(layer_groups(model), lr=0.1)
    expected_rates = []
    for loss in (2.0, 2.5, 1.0):
        conv.weight.grad, conv.bias.grad, fc.weight.grad = g_conv.clone(), g_bias.clone(), g_fc.clone()
        fc.bias.grad = None  # a parameter without gradient is left alone
        opt.step(loss=loss)
        expected_rates.append(opt.layer_lrs())

    a_conv, a_fc = 0.1 * math.exp(-2.5 / 6), 0.1 * math.exp(-0.25)
    assert expected_rates[0] == pytest.approx({"0": 0.1, "3": 0.1}, rel=1e-6)
    assert expected_rates[1] == pytest.approx({"0": a_conv, "3": a_fc}, rel=1e-6)
    assert expected_rates[2] == pytest.approx({"0": a_conv, "3": a_fc}, rel=1e-6)
    assert opt.layer_variations() == pytest.approx({"0": a_conv * 5 / 3, "3": a_fc}, rel=1e-6)
    total_conv, total_fc = 0.1 + 2 * a_conv, 0.1 + 2 * a_fc
    torch.testing.assert_close(conv.weight.detach(), w_conv - total_conv * g_conv)
    torch.testing.assert_close(conv.bias.detach(), b_conv - total_conv * g_bias)
    torch.testing.assert_close(fc.weight.detach(), w_fc - total_fc * g_fc)


def reference_llb(weights, grads_per_step, losses, *, kinds, lr, wd, xi, tau, direction, conv_norm, fc_norm, beta, r):
    """docs/llb-sgd.md written out in float64 numpy, independently of the optimizer's code."""
    weights = [w.astype(np.float64).copy() for w in weights]
    rates = [lr] * len(weights)
    variations = [0.0] * len(weights)
    previous = None
    history = []
    for grads, loss in zip(grads_per_step, losses, strict=True):
        smoothed = loss if previous is None or beta == 0 else beta * previous + (1 - beta) * loss
        if previous is None:
            delta = 0.0
        elif direction == "gate":
            delta = smoothed if previous - smoothed < tau else 0.0
        elif direction == "signed":
            delta = smoothed * np.sign(smoothed - previous)
        elif direction == "loss":
            delta = smoothed
        elif direction == "extrapolate":
            delta = max(0.0, 2 * smoothed - previous)
        else:
            delta = smoothed / previous
        previous = smoothed
        for k, (w, g) in enumerate(zip(weights, grads, strict=True)):
            rates[k] = min(max(rates[k] * math.exp(-xi * delta * variations[k]), r * lr), lr)
            update = rates[k] * (g + wd * w)
            if kinds[k] == "conv":
                kernel = np.sqrt((update.reshape(len(update), -1) ** 2).sum(1))
                if conv_norm == "kernel_rms":
                    kernel = kernel / math.sqrt(update[0].size)
                elif conv_norm == "relative":
                    kernel = kernel / (np.sqrt((w.reshape(len(w), -1) ** 2).sum(1)) + 1e-12)
                variations[k] = kernel.mean()
            elif fc_norm == "relative":
                variations[k] = np.abs(update).sum() / (np.abs(w).sum() + 1e-12)
            else:
                variations[k] = np.abs(update).mean()
            weights[k] = w - update
        history.append(list(rates))
    return weights, history


OPTIONS = [
    {"wd": 0.0, "tau": 0.0, "beta": 0.0},
    {"wd": 0.05, "tau": 0.3, "beta": 0.0},
    {"wd": 0.0, "tau": 0.0, "beta": 0.6},
]


@pytest.mark.parametrize("extra", OPTIONS, ids=["plain", "decay+threshold", "loss_ema"])
@pytest.mark.parametrize(
    ("direction", "conv_norm", "fc_norm"),
    [(d, c, f) for d in DIRECTIONS for c, f in itertools.zip_longest(CONV_NORMS, FC_NORMS, fillvalue="l1_mean")],
)
def test_three_steps_match_the_formulas(direction, conv_norm, fc_norm, extra):
    model = nn.Sequential(nn.Conv2d(2, 3, 2, bias=False), nn.Flatten(), nn.Linear(12, 2, bias=False))
    params = [model[0].weight, model[2].weight]
    start = [p.detach().numpy().copy() for p in params]
    rng = np.random.default_rng(1)
    grads = [[rng.normal(size=p.shape).astype(np.float32) for p in params] for _ in range(3)]
    losses = [2.0, 2.5, 2.3]  # rose, then fell by 0.2: below a threshold of 0.3, above none
    hp = {"lr": 0.1, "xi": 2.0, "r": 1e-3}
    opt = LLbSGD(
        layer_groups(model),
        lr=hp["lr"],
        weight_decay=extra["wd"],
        xi=hp["xi"],
        threshold=extra["tau"],
        direction=direction,
        conv_norm=conv_norm,
        fc_norm=fc_norm,
        loss_ema=extra["beta"],
        min_lr_ratio=hp["r"],
    )
    rates = []
    for step_grads, loss in zip(grads, losses, strict=True):
        for p, g in zip(params, step_grads, strict=True):
            p.grad = torch.from_numpy(g.copy())
        opt.step(loss=torch.tensor(loss))
        rates.append(list(opt.layer_lrs().values()))
    weights, expected = reference_llb(
        start,
        [[g.astype(np.float64) for g in s] for s in grads],
        losses,
        kinds=["conv", "fc"],
        lr=hp["lr"],
        wd=extra["wd"],
        xi=hp["xi"],
        tau=extra["tau"],
        direction=direction,
        conv_norm=conv_norm,
        fc_norm=fc_norm,
        beta=extra["beta"],
        r=hp["r"],
    )
    np.testing.assert_allclose(rates, expected, rtol=2e-5)
    for p, w in zip(params, weights, strict=True):
        np.testing.assert_allclose(p.detach().numpy(), w, rtol=2e-5, atol=1e-7)


# --- defining properties ------------------------------------------------------------------------------


def random_steps(opt, model, steps, seed=0, losses=None):
    generator = torch.Generator().manual_seed(seed)
    history = []
    for t in range(steps):
        for p in model.parameters():
            p.grad = torch.randn(p.shape, generator=generator)
        loss = losses[t] if losses is not None else float(torch.rand((), generator=generator) * 3)
        opt.step(loss=loss)
        history.append(opt.layer_lrs())
    return history


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_rate_stays_between_floor_and_lr(direction):
    model = small_cnn()
    opt = LLbSGD(layer_groups(model), lr=0.5, xi=5.0, direction=direction, min_lr_ratio=0.01)
    for rates in random_steps(opt, model, 150):
        assert all(0.5 * 0.01 <= r <= 0.5 for r in rates.values())
    assert min(rates.values()) == pytest.approx(0.005)  # strong decay reaches the floor


def test_gate_never_raises_a_rate_and_signed_can():
    model = small_cnn()
    gate = LLbSGD(layer_groups(model), lr=0.5, xi=0.5)
    history = random_steps(gate, model, 100)
    for before, after in itertools.pairwise(history):
        assert all(after[k] <= before[k] for k in before)
    model = small_cnn()
    signed = LLbSGD(layer_groups(model), lr=0.5, xi=0.5, direction="signed")
    history = random_steps(signed, model, 100)
    assert any(after["0"] > before["0"] for before, after in itertools.pairwise(history))


def test_falling_loss_keeps_the_rate_at_lr_under_gate():
    model = small_cnn()
    opt = LLbSGD(layer_groups(model), lr=0.1)
    history = random_steps(opt, model, 10, losses=[3.0 - 0.1 * t for t in range(10)])
    assert all(r == pytest.approx(0.1) for rates in history for r in rates.values())


@pytest.mark.parametrize(
    ("options", "weight_decay"),
    [
        ({}, 0.0),
        ({"conv_norm": "relative", "fc_norm": "relative"}, 5e-4),
        ({"conv_norm": "kernel_rms", "direction": "signed", "loss_ema": 0.5}, 1e-2),
    ],
)
def test_multi_tensor_path_equals_the_per_tensor_loop(options, weight_decay):
    results = []
    for foreach in (True, False):
        model = small_cnn()
        groups = layer_groups(model)
        groups[1]["weight_decay"] = 0.0  # one layer without decay: both decay branches of the fast path
        opt = LLbSGD(groups, lr=0.2, xi=3.0, weight_decay=weight_decay, foreach=foreach, **options)
        rates = random_steps(opt, model, 12, seed=3)
        results.append((rates, [p.detach().clone() for p in model.parameters()]))
    (rates_a, params_a), (rates_b, params_b) = results
    for a, b in zip(rates_a, rates_b, strict=True):
        assert a == pytest.approx(b, rel=1e-5)
    for a, b in zip(params_a, params_b, strict=True):
        torch.testing.assert_close(a, b)


def test_plain_parameters_are_each_their_own_layer():
    model = small_cnn()
    opt = LLbSGD(model.parameters(), lr=0.1)
    kinds = [g["kind"] for g in opt.param_groups]
    assert kinds == ["conv", "other", "other", "conv", "other", "fc", "other"]
    assert list(opt.layer_lrs()) == [f"param{i}" for i in range(7)]
    random_steps(opt, model, 3)


# --- resume -------------------------------------------------------------------------------------------


def train_steps(model, opt, steps, start=0):
    for t in range(start, start + steps):
        generator = torch.Generator().manual_seed(t)
        x = torch.randn(8, 3, 6, 6, generator=generator)
        y = torch.randint(0, 3, (8,), generator=generator)
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step(loss=loss.detach())


def test_resume_from_state_dict_equals_an_uninterrupted_run_bitwise(resume_check):
    options = {"lr": 0.3, "weight_decay": 1e-3, "xi": 2.0, "loss_ema": 0.3}
    opt, opt_resumed = resume_check(small_cnn, lambda m: LLbSGD(layer_groups(m), **options), train_steps, 20)
    assert opt_resumed.layer_lrs() == opt.layer_lrs()
    assert opt_resumed.layer_variations() == opt.layer_variations()
    assert min(opt.layer_lrs().values()) < 0.3  # the rates did move: the test compares something


# --- interface ----------------------------------------------------------------------------------------


def test_step_without_a_loss_says_how_to_pass_it():
    model = small_cnn()
    opt = LLbSGD(layer_groups(model), lr=0.1)
    with pytest.raises(RuntimeError, match=r"step\(loss=loss\) or optimizer.step\(closure\)"):
        opt.step()


def test_closure_supplies_the_loss():
    model = small_cnn()
    opt = LLbSGD(layer_groups(model), lr=0.1)
    x = torch.randn(4, 3, 6, 6)

    def closure():
        opt.zero_grad()
        loss = model(x).pow(2).mean()
        loss.backward()
        return loss

    before = model[0].weight.detach().clone()
    returned = opt.step(closure)
    assert isinstance(returned, torch.Tensor) and not torch.equal(before, model[0].weight)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"direction": "up"}, "direction='up' is not one of gate, signed, loss, extrapolate, ratio"),
        ({"conv_norm": "l2"}, "conv_norm='l2' is not one of kernel_fro, kernel_rms, relative"),
        ({"fc_norm": "l2"}, "fc_norm='l2' is not one of l1_mean, relative"),
        ({"lr": 0.0}, "lr=0.0 must be > 0"),
        ({"loss_ema": 1.0}, "loss_ema=1.0 must be in [0, 1)"),
        ({"min_lr_ratio": 2.0}, "min_lr_ratio=2.0 must be in [0, 1]"),
        ({"max_lr_ratio": 0.5}, "max_lr_ratio=0.5 must be >= 1, finite"),
        ({"groups": "net"}, "groups='net' is not one of layer, global"),
        ({"weight_decay": -1.0}, "weight_decay=-1.0 must be >= 0"),
    ],
)
def test_invalid_values_name_the_valid_choices(kwargs, message):
    with pytest.raises(ValueError) as info:
        LLbSGD(small_cnn().parameters(), **{"lr": 0.1, **kwargs})
    assert message in str(info.value)


def test_invalid_kind_in_a_param_group():
    with pytest.raises(ValueError, match="kind='dense' is not one of conv, fc, other"):
        LLbSGD([{"params": list(small_cnn().parameters()), "kind": "dense"}], lr=0.1)


def test_a_scheduler_lowers_the_ceiling_and_the_rates_follow():
    """group["lr"] is α0: a scheduler moves the ceiling (and floor) and every rate is clipped into it."""
    model = small_cnn()
    opt = LLbSGD(layer_groups(model), lr=0.4, xi=0.02)
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=5, gamma=0.1)
    history = []
    for t in range(10):
        random_steps(opt, model, 1, seed=t, losses=[1.0 + t])  # a rising loss: rates decay a little each step
        history.append(opt.layer_lrs())
        scheduler.step()
    assert all(0.2 < r < 0.4 for r in history[4].values())  # decayed by the variations, below α0 = 0.4
    assert all(r == pytest.approx(0.04, rel=1e-6) for r in history[5].values())  # clipped to the new α0
    assert all(r < 0.04 for r in history[9].values())


# --- the ablation options: one shared rate, a ceiling above α0; the loss a step accepts ------------------


def test_global_groups_share_one_rate_that_follows_the_rule_with_the_mean_variation():
    model = small_cnn()
    opt = LLbSGD(layer_groups(model), lr=0.5, xi=3.0, groups="global")
    losses = [1.0 + 0.1 * t for t in range(12)]  # a rising loss: under gate δ^t = L^t from the second step on
    expected, variations = 0.5, None
    for t, loss in enumerate(losses):
        random_steps(opt, model, 1, seed=t, losses=[loss])
        rates = list(opt.layer_lrs().values())
        assert len(set(rates)) == 1  # one value in every column of layer_lrs.csv
        if variations is not None:  # δ^1 = 0: the first step keeps α0
            expected = max(expected * math.exp(-3.0 * loss * float(np.mean(variations))), 0.5e-6)
        assert rates[0] == pytest.approx(expected, rel=1e-12)
        variations = list(opt.layer_variations().values())
    assert expected < 0.4  # it did decay

    per_layer = LLbSGD(layer_groups(small_cnn()), lr=0.5, xi=3.0)
    random_steps(per_layer, small_cnn(), 1)
    with pytest.raises(ValueError, match="groups='global' shares one rate, but the param groups differ in lr"):
        mixed = LLbSGD([{"params": [p], "lr": 0.1 * (i + 1)} for i, p in enumerate(small_cnn().parameters())],
                       lr=0.1, groups="global")  # fmt: skip
        mixed.step(loss=1.0)


def test_max_lr_ratio_lets_signed_raise_a_rate_above_alpha0_up_to_its_ceiling():
    falling = [3.0 - 0.2 * t for t in range(12)]  # δ < 0 under signed: the rates rise
    capped = small_cnn()
    at_alpha0 = LLbSGD(layer_groups(capped), lr=0.1, xi=5.0, direction="signed")
    assert all(r == pytest.approx(0.1) for rates in random_steps(at_alpha0, capped, 12, losses=falling)
               for r in rates.values())  # fmt: skip
    model = small_cnn()
    opt = LLbSGD(layer_groups(model), lr=0.1, xi=5.0, direction="signed", max_lr_ratio=3.0)
    history = random_steps(opt, model, 12, losses=falling)
    assert all(r == 0.1 for r in history[0].values())  # the first rate is α0, not the ceiling
    assert all(0.1 <= r <= 0.3 + 1e-12 for rates in history for r in rates.values())
    assert max(history[-1].values()) > 0.1 and max(history[-1].values()) == pytest.approx(0.3)


@pytest.mark.parametrize(("loss", "error"), [(float("nan"), "NonFiniteLoss"), (float("inf"), "NonFiniteLoss"),
                                             (0.0, "ValueError"), (-1.0, "ValueError")])  # fmt: skip
def test_a_non_positive_or_non_finite_loss_is_refused_naming_the_direction(loss, error):
    from llbbench.optim import NonFiniteLoss

    model = small_cnn()
    opt = LLbSGD(layer_groups(model), lr=0.1, direction="extrapolate")
    random_steps(opt, model, 1)
    with pytest.raises(ValueError, match=r"direction='extrapolate'") as info:
        random_steps(opt, model, 1, losses=[loss])
    assert isinstance(info.value, NonFiniteLoss) == (error == "NonFiniteLoss")


@pytest.mark.parametrize(("key", "value"), [("direction", "signed"), ("threshold", 0.5), ("loss_ema", 0.9),
                                            ("groups", "global")])  # fmt: skip
def test_a_per_group_value_of_a_loss_option_is_refused(key, value):
    groups = layer_groups(small_cnn())
    groups[1][key] = value
    with pytest.raises(ValueError, match=rf"{key} is one value for the whole optimizer .* group '3' sets {key}="):
        LLbSGD(groups, lr=0.1)
    groups[1][key] = LLbSGD(layer_groups(small_cnn()), lr=0.1).defaults[key]  # the optimizer's own value is fine
    LLbSGD(groups, lr=0.1)


def test_registry_builds_llb_over_layer_groups():
    model = small_cnn()
    opt = build("llb", model, lr=0.05, weight_decay=1e-4)
    assert isinstance(opt, LLbSGD)
    assert [g["name"] for g in opt.param_groups] == ["0", "3", "7"]
    assert opt.defaults["lr"] == 0.05 and opt.defaults["weight_decay"] == 1e-4


# --- two workers, different local losses ------------------------------------------------------------------


def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        model = small_cnn()
        opt = LLbSGD(layer_groups(model), lr=0.3, xi=2.0)
        losses = [2.0 + rank, 2.6 + 3 * rank, 2.5 - rank, 3.0 + rank]  # mean: 2.5, 4.1, 2.0, 3.5
        random_steps(opt, model, len(losses), seed=5, losses=losses)  # identical gradients on both workers
        torch.save(opt.layer_lrs(), os.path.join(out_dir, f"rates{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_two_gloo_workers_keep_identical_rates_when_their_losses_differ(tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    rates = [torch.load(tmp_path / f"rates{r}.pt") for r in range(2)]
    assert rates[0] == rates[1]
    model = small_cnn()
    single = LLbSGD(layer_groups(model), lr=0.3, xi=2.0)
    expected = random_steps(single, model, 4, seed=5, losses=[2.5, 4.1, 2.0, 3.5])[-1]
    assert rates[0] == pytest.approx(expected, rel=1e-6)
    assert min(expected.values()) < 0.3


# --- on the device: no host sync ----------------------------------------------------------------------


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("loss_ema", [0.0, 0.9])
def test_the_device_side_bookkeeping_gives_the_same_run_bit_for_bit(direction, loss_ema):
    """sync_free=True (the default on CUDA) skips the host check of the loss: the same weights and rates as with
    it, over steps where the loss rises and falls."""
    options = {"lr": 0.3, "xi": 2.0, "direction": direction, "loss_ema": loss_ema, "weight_decay": 1e-3}
    finals = []
    for sync_free in (False, True):
        model = small_cnn()
        opt = LLbSGD(layer_groups(model), **options, sync_free=sync_free)
        train_steps(model, opt, 12)
        finals.append((torch.cat([p.detach().flatten() for p in model.parameters()]), opt.layer_lrs()))
    assert torch.equal(finals[0][0], finals[1][0]) and finals[0][1] == finals[1][1]
    assert min(finals[0][1].values()) < 0.3 or direction in ("signed", "extrapolate")  # the rates moved


def test_a_device_side_step_reads_nothing_back_to_the_host(monkeypatch):
    """No `.item()`, `float()`, `bool()` or `.tolist()` of a tensor inside `step` (each would sync on CUDA)."""
    model = small_cnn()
    opt = LLbSGD(layer_groups(model), lr=0.3, loss_ema=0.5, sync_free=True)
    train_steps(model, opt, 2)  # state set up

    def refuse(*_):
        raise AssertionError("a host sync inside LLbSGD.step")

    for name in ("item", "__float__", "__bool__", "tolist"):
        monkeypatch.setattr(torch.Tensor, name, refuse)
    x = torch.randn(8, 3, 6, 6, generator=torch.Generator().manual_seed(9))
    y = torch.randint(0, 3, (8,), generator=torch.Generator().manual_seed(9))
    loss = nn.functional.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step(loss=loss.detach())
    monkeypatch.undo()
    assert math.isfinite(max(opt.layer_lrs().values()))
