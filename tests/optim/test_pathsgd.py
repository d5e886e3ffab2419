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
    x = torch.randn(5, *shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    y = torch.randn(5, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    outputs = []
    for scaled in (False, True):
        model = make().double()
        if scaled:
            rescale(model, 1, 7.0)
            rescale(model, 0, 0.2)
        opt = PathSGD(model.parameters(), lr=0.05, model=model, input_shape=shape)
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


def test_resume_from_state_dict_equals_an_uninterrupted_run_bitwise(resume_check):
    options = {"lr": 0.05, "momentum": 0.9, "weight_decay": 1e-3, "update_every": 3, "input_shape": (3, 6, 6)}
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
