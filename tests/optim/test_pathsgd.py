"""Path-SGD against docs/baselines.md: κ by brute-force path enumeration, rescaling invariance, every network."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from llbbench import models
from llbbench.optim import PathSGD, build, path_kappa


def mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))


def test_kappa_of_a_fully_connected_net_equals_path_enumeration():
    model = mlp()
    w1, b1, w2, b2 = (p.detach().double() for p in model.parameters())
    kappa = path_kappa(model, (3,))
    expected_w1, expected_b1 = torch.zeros_like(w1), torch.zeros_like(b1)
    expected_w2, expected_b2 = torch.zeros_like(w2), torch.zeros_like(b2)
    # every path: (input i or bias of hidden j) -> hidden j -> output k, or the bias of output k alone
    for i, j, k in itertools.product(range(3), range(4), range(2)):
        expected_w1[j, i] += w2[k, j] ** 2  # the other edge on input i -> j -> k (the input is 1)
        expected_w2[k, j] += w1[j, i] ** 2
    for j, k in itertools.product(range(4), range(2)):
        expected_b1[j] += w2[k, j] ** 2
        expected_w2[k, j] += b1[j] ** 2  # path: bias of j -> j -> k
    expected_b2 += 1.0  # the path made of the bias edge alone: an empty product
    for name, expected in zip(
        ("0.weight", "0.bias", "2.weight", "2.bias"), (expected_w1, expected_b1, expected_w2, expected_b2), strict=True
    ):
        torch.testing.assert_close(kappa[name], expected)


def test_kappa_of_a_conv_net_equals_path_enumeration():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(1, 2, 2), nn.ReLU(), nn.Flatten(), nn.Linear(8, 1))  # 3×3 -> 2×2×2 -> 1
    w, b, v, _ = (p.detach().double() for p in model.parameters())
    kappa = path_kappa(model, (1, 3, 3))
    expected_w, expected_b, expected_v = torch.zeros_like(w), torch.zeros_like(b), torch.zeros_like(v)
    for c, y, x in itertools.product(range(2), range(2), range(2)):
        unit = c * 4 + y * 2 + x  # the flattened index of conv output (c, y, x)
        into_unit = b[c] ** 2  # the bias path into the unit
        for dy, dx in itertools.product(range(2), range(2)):  # input pixel (y+dy, x+dx) -> unit, weight w[c,0,dy,dx]
            expected_w[c, 0, dy, dx] += v[0, unit] ** 2  # a shared weight sums over all its edges
            into_unit = into_unit + w[c, 0, dy, dx] ** 2
        expected_b[c] += v[0, unit] ** 2
        expected_v[0, unit] += into_unit
    torch.testing.assert_close(kappa["0.weight"], expected_w)
    torch.testing.assert_close(kappa["0.bias"], expected_b)
    torch.testing.assert_close(kappa["3.weight"], expected_v)
    torch.testing.assert_close(kappa["3.bias"], torch.ones(1, dtype=torch.float64))


def test_batchnorm_enters_as_its_squared_scale_and_gets_plain_sgd():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(2, 3, bias=False), nn.BatchNorm1d(3), nn.ReLU(), nn.Linear(3, 1, bias=False))
    bn = model[1]
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([0.5, 2.0, -1.0]))
        bn.bias.copy_(torch.tensor([3.0, 3.0, 3.0]))  # the shift is left out
        bn.running_var.copy_(torch.tensor([4.0, 1.0, 0.25]))
    kappa = path_kappa(model, (2,))
    scale = (bn.weight.detach().double() ** 2) / (bn.running_var.double() + bn.eps)
    v = model[3].weight.detach().double()[0]
    expected = (scale * v**2)[:, None].expand(3, 2)
    torch.testing.assert_close(kappa["0.weight"], expected)
    assert kappa["1.weight"] is None and kappa["1.bias"] is None
    assert model.training and bn.training  # the modes are restored


def rescale_mlp(model: nn.Sequential, unit: int, c: float) -> None:
    with torch.no_grad():
        model[0].weight[unit] *= c
        model[0].bias[unit] *= c
        model[2].weight[:, unit] /= c


def rescale_conv(model: nn.Sequential, channel: int, c: float) -> None:
    with torch.no_grad():
        model[0].weight[channel] *= c
        model[0].bias[channel] *= c
        model[3].weight[:, channel] /= c


def conv_net() -> nn.Sequential:
    torch.manual_seed(3)
    return nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(3, 2, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(2 * 3 * 3, 2),
    )


@pytest.mark.parametrize(
    ("make", "rescale", "shape"),
    [(mlp, rescale_mlp, (3,)), (conv_net, rescale_conv, (2, 6, 6))],
    ids=["mlp", "conv-per-output-channel"],
)
def test_a_step_is_invariant_to_node_wise_rescaling(make, rescale, shape):
    """The defining property, of the bare rule (normalize=none): a ratio is a rate, and rescaling changes it."""
    x = torch.randn(5, *shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    y = torch.randn(5, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    outputs = []
    for scaled in (False, True):
        model = make().double()
        if scaled:
            rescale(model, 1, 7.0)
            rescale(model, 0, 0.2)
        opt = PathSGD(model.parameters(), lr=0.05, model=model, input_shape=shape, normalize="none")
        for _ in range(3):
            loss = ((model(x) - y) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        outputs.append(model(x).detach())
    torch.testing.assert_close(outputs[0], outputs[1], rtol=1e-9, atol=1e-10)
    # plain SGD is not invariant: the check above can fail
    plain = []
    for scaled in (False, True):
        model = make().double()
        if scaled:
            rescale(model, 1, 7.0)
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        opt.step()
        plain.append(model(x).detach())
    assert not torch.allclose(plain[0], plain[1], rtol=1e-6)


@pytest.mark.parametrize("name", ["resnet34", "resnet50", "resnet152", "alexnet", "vgg16", "googlenet"])
def test_kappa_is_finite_and_positive_on_every_cifar_network(name):
    torch.manual_seed(0)
    model = models.build(name, 10, (3, 32, 32), width=0.125)
    kappa = path_kappa(model, (3, 32, 32))
    norm_params = {
        f"{m_name}.{p_name}"
        for m_name, m in model.named_modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
        for p_name, _ in m.named_parameters(recurse=False)
    }
    assert {n for n, k in kappa.items() if k is None} == norm_params
    for n, k in kappa.items():
        if k is not None:
            assert torch.isfinite(k).all() and (k > 0).all(), n


def train(model, opt, steps, start=0):
    for t in range(start, start + steps):
        generator = torch.Generator().manual_seed(t)
        x = torch.randn(8, 3, 6, 6, generator=generator)
        y = torch.randint(0, 3, (8,), generator=generator)
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()


def bn_cnn() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(36, 3),
    )


@pytest.mark.parametrize("normalize", ["layer", "first", "every", "none"])
def test_resume_from_state_dict_equals_an_uninterrupted_run_bitwise(resume_check, normalize):
    options = {"lr": 0.05, "momentum": 0.9, "weight_decay": 1e-3, "update_every": 3, "input_shape": (3, 6, 6),
               "normalize": normalize}  # fmt: skip
    resume_check(bn_cnn, lambda m: PathSGD(m.parameters(), model=m, **options), train, 10)


def test_registry_gives_pathsgd_the_model_and_input_shape():
    model = bn_cnn()
    opt = build("pathsgd", model, input_shape=(3, 6, 6), lr=0.01)
    assert isinstance(opt, PathSGD) and opt.model is model and opt.input_shape == (3, 6, 6)
    train(model, opt, 2)
    assert len(opt.kappa()) == len(list(model.parameters()))


def test_parameters_of_another_model_are_refused():
    with pytest.raises(ValueError, match="do not belong to the given model"):
        PathSGD(mlp().parameters(), lr=0.1, model=mlp(), input_shape=(3,))


def _two_workers_step_path_sgd(rank: int, folder: str) -> None:
    """One of two gloo workers: a BatchNorm network in DDP, each worker on batches of its own, three Path-SGD
    steps; then the worker's κ and weights to `folder/rank<r>.pt`."""
    import torch.distributed as dist
    import torch.nn.functional as F
    from torch.nn.parallel import DistributedDataParallel

    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=2)
    try:
        torch.manual_seed(rank)  # different initial weights: DDP starts both from rank 0's
        model = models.build("smallcnn", 10, (3, 16, 16), width=0.25)
        replica = DistributedDataParallel(model)
        optimizer = build("pathsgd", model, input_shape=(3, 16, 16), lr=1e-3)
        generator = torch.Generator().manual_seed(100 + rank)
        for _ in range(3):
            images = torch.randn(4, 3, 16, 16, generator=generator) * (1 + rank)  # statistics of its own
            labels = torch.randint(0, 10, (4,), generator=generator)
            optimizer.zero_grad()
            F.cross_entropy(replica(images), labels).backward()
            optimizer.step()
        kappa = [k for k in optimizer.kappa() if k is not None]
        torch.save((kappa, dict(model.named_parameters())), f"{folder}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_kappa_is_the_same_on_every_worker_of_a_distributed_run(tmp_path):
    """Without synchronised BatchNorm each worker's running statistics are its own; κ uses their average, so the
    workers compute one κ and their replicas stay equal (with each worker's own κ they drift apart)."""
    import torch.multiprocessing as mp

    mp.spawn(_two_workers_step_path_sgd, args=(str(tmp_path),), nprocs=2, join=True)
    (kappa0, weights0), (kappa1, weights1) = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))
    assert len(kappa0) == len(kappa1) > 0
    for a, b in zip(kappa0, kappa1, strict=True):
        assert torch.equal(a, b)
    for name in weights0:
        assert torch.equal(weights0[name], weights1[name]), name


# --- average pooling, the relative floor, the scale of the step (docs/baselines.md) -----------------------------


@pytest.mark.parametrize("pool", [nn.AvgPool2d(2), nn.AdaptiveAvgPool2d(1), nn.AdaptiveAvgPool2d((2, 1))])
def test_kappa_through_average_pooling_squares_its_weights(pool):
    """Brute force: input pixel → conv unit (c, y, x) → its pooling window(s) (weight 1/d each) → output k. The
    pool is a linear layer whose weights 1/d are squared like every other edge's (κ uses squared weights)."""
    torch.manual_seed(6)
    model = nn.Sequential(nn.Conv2d(1, 2, 2), nn.ReLU(), pool, nn.Flatten())  # 5×5 -> 2×4×4 -> pooled
    cells = model(torch.zeros(1, 1, 5, 5)).shape[1] // 2
    model.append(nn.Linear(2 * cells, 3))
    w, b, v, _ = (p.detach().double() for p in model.parameters())
    # the pooling weight of conv unit (y, x) into each pooled cell, from the pool applied to one-hot maps
    weights = torch.zeros(4, 4, cells, dtype=torch.float64)
    for y, x in itertools.product(range(4), range(4)):
        hot = torch.zeros(1, 1, 4, 4, dtype=torch.float64)
        hot[0, 0, y, x] = 1.0
        weights[y, x] = pool(hot).flatten()
    expected_w, expected_b, expected_v = torch.zeros_like(w), torch.zeros_like(b), torch.zeros_like(v)
    for c, y, x, cell, k in itertools.product(range(2), range(4), range(4), range(cells), range(3)):
        edge = weights[y, x, cell] ** 2 * v[k, c * cells + cell] ** 2  # pool edge, then the linear edge
        if weights[y, x, cell] == 0:
            continue
        for dy, dx in itertools.product(range(2), range(2)):
            expected_w[c, 0, dy, dx] += edge
            expected_v[k, c * cells + cell] += w[c, 0, dy, dx] ** 2 * weights[y, x, cell] ** 2
        expected_b[c] += edge
        expected_v[k, c * cells + cell] += b[c] ** 2 * weights[y, x, cell] ** 2
    kappa = path_kappa(model, (1, 5, 5))
    torch.testing.assert_close(kappa["0.weight"], expected_w)
    torch.testing.assert_close(kappa["0.bias"], expected_b)
    torch.testing.assert_close(kappa["4.weight"], expected_v)
    # the bug this replaces, an unsquared 1/d, would give d times these values
    assert not torch.allclose(kappa["0.bias"], expected_b * 4, rtol=0.1)


def test_an_average_pool_it_cannot_square_is_refused():
    model = nn.Sequential(nn.Conv1d(1, 2, 2), nn.AvgPool1d(2), nn.Flatten(), nn.Linear(2, 1))
    with pytest.raises(ValueError, match="AvgPool1d"):
        path_kappa(model, (1, 5))


def test_kappa_is_floored_relative_to_its_parameters_median():
    model = nn.Sequential(nn.Linear(1, 3, bias=False), nn.ReLU(), nn.Linear(3, 1, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0], [2.0], [4.0]]))
        model[2].weight.copy_(torch.tensor([[1e-6, 1.0, 2.0]]))  # unit 0's way out is almost closed
    bare = path_kappa(model, (1,))
    torch.testing.assert_close(bare["0.weight"][:, 0], torch.tensor([1e-12, 1.0, 4.0], dtype=torch.float64))
    floored = path_kappa(model, (1,), relative_floor=1e-2)
    torch.testing.assert_close(floored["0.weight"][:, 0], torch.tensor([1e-2, 1.0, 4.0], dtype=torch.float64))
    torch.testing.assert_close(floored["2.weight"], bare["2.weight"])  # [1, 4, 16]: nothing below 1e-2 · 4


def one_step(normalize: str, steps: int = 1, lr: float = 0.1):
    """A two-layer net after `steps` steps: (its optimizer, the gradients and κ of the last step, the weights
    before and after it)."""
    torch.manual_seed(7)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).double()
    opt = PathSGD(model.parameters(), lr=lr, model=model, input_shape=(3,), normalize=normalize)
    x = torch.randn(6, 3, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    for t in range(steps):
        before = [p.detach().clone() for p in model.parameters()]
        opt.zero_grad()
        ((model(x) - t) ** 2).mean().backward()
        grads = [p.grad.clone() for p in model.parameters()]
        opt.step()
    return opt, grads, opt.kappa(), before, [p.detach().clone() for p in model.parameters()]


def test_the_bare_rule_steps_by_eta_over_kappa():
    _, grads, kappa, before, after = one_step("none")
    for g, k, w0, w1 in zip(grads, kappa, before, after, strict=True):
        torch.testing.assert_close(w1, w0 - 0.1 * g / k)


def test_layer_normalization_gives_each_step_its_gradients_norm_and_the_path_direction():
    _, grads, kappa, before, after = one_step("layer", steps=2)
    for g, k, w0, w1 in zip(grads, kappa, before, after, strict=True):
        step = (w0 - w1) / 0.1
        torch.testing.assert_close(step.norm(), g.norm())
        torch.testing.assert_close(step / step.norm(), (g / k) / (g / k).norm())  # the path direction


@pytest.mark.parametrize(("normalize", "fixed"), [("first", True), ("every", False)])
def test_the_global_ratio_is_fixed_at_the_first_step_or_recomputed(normalize, fixed):
    first, *_ = one_step(normalize, steps=1)
    opt, grads, kappa, before, after = one_step(normalize, steps=3)
    direction = [g / k for g, k in zip(grads, kappa, strict=True)]
    current = torch.cat([g.flatten() for g in grads]).norm() / torch.cat([d.flatten() for d in direction]).norm()
    assert opt.ratio() == pytest.approx(first.ratio()) if fixed else opt.ratio() == pytest.approx(float(current))
    assert opt.ratio() != pytest.approx(float(current) if fixed else first.ratio())
    for d, w0, w1 in zip(direction, before, after, strict=True):
        torch.testing.assert_close(w1, w0 - 0.1 * opt.ratio() * d)


def test_kappa_ranges_are_what_it_computed():
    opt, _, kappa, *_ = one_step("layer")
    ranges = opt.kappa_ranges()
    assert list(ranges) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    for (low, high), k in zip(ranges.values(), kappa, strict=True):
        assert low == pytest.approx(float(k.min()), rel=1e-3) and high == pytest.approx(float(k.max()), rel=1e-3)


def learnable_batches(steps: int, batch: int = 32):
    """Batches of 16×16 images whose class (of 4) sets which quadrant is bright: learnable in a few dozen steps."""
    generator = torch.Generator().manual_seed(9)
    for _ in range(steps):
        labels = torch.randint(0, 4, (batch,), generator=generator)
        images = torch.randn(batch, 3, 16, 16, generator=generator) * 0.5
        for i, label in enumerate(labels.tolist()):
            y, x = divmod(label, 2)
            images[i, :, 8 * y : 8 * y + 8, 8 * x : 8 * x + 8] += 1.5
        yield images, labels


@pytest.mark.parametrize("zero_init_residual", [False, True], ids=["resnet", "zero-init-residual"])
def test_path_sgd_trains_a_batchnorm_resnet_at_sgds_rate(zero_init_residual):
    """At its configured rate (SGD's 0.1, normalize=layer) Path-SGD learns a small BatchNorm ResNet within 40
    steps, also with zero-initialized residual branches (whose κ collapses after the first step). The bare rule
    at that rate freezes the weights of the plain ResNet (κ ≈ 1e3-1e6): the check can fail."""
    import math

    bar = 0.5 * math.log(4)
    modes = ("layer", "none") if not zero_init_residual else ("layer",)
    for normalize in modes:
        torch.manual_seed(10)
        model = models.build("resnet34", 4, (3, 16, 16), width=0.125, zero_init_residual=zero_init_residual)
        opt = build("pathsgd", model, input_shape=(3, 16, 16), lr=0.1, normalize=normalize, weight_decay=5e-4)
        losses = []
        for images, labels in learnable_batches(40):
            loss = nn.functional.cross_entropy(model(images), labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert losses[0] > bar
        assert (losses[-1] < bar) == (normalize == "layer"), (normalize, losses[-1])
