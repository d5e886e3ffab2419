"""Amortized training-step time (forward, backward, step) of ESGD and Path-SGD against SGD, side by side.

One network and one batch for all: the CIFAR form of ResNet-34 at width 0.125 (the CPU-scale network) on a
random 128-image batch of 32×32 images. Each optimizer runs `--steps` consecutive steps (40 = two ESGD cycles of
update_every=20, so its Hessian-vector steps are amortized as in training), in `--rounds` interleaved rounds; the
median round is reported. Path-SGD's κ computation (update_every=1: every step) is also timed on its own, and
reported as a fraction of its step. Writes results/bench/train_step.json and a Markdown table on stdout.

    python scripts/bench_train_step.py [--steps 40] [--rounds 3] [--model resnet34] [--width 0.125]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from llbbench import models, optim
from llbbench.optim import path_kappa
from llbbench.records.environment import environment

ROOT = Path(__file__).resolve().parent.parent
OPTIMIZERS = {
    "sgd": {"lr": 0.01},
    "esgd": {"lr": 0.01, "update_every": 20, "warmup": 0},  # the steady state; the warm-up is 20 estimating steps once
    "pathsgd": {"lr": 0.01, "update_every": 1},
    "llb": {"lr": 0.01},
}
TARGET_ESGD = 1.3  # docs/scales.md: ESGD amortized step at most 1.3x SGD's


def make(name: str, args) -> tuple[torch.nn.Module, torch.optim.Optimizer, optim.OptimizerSpec]:
    torch.manual_seed(0)
    model = models.build(args.model, 10, (3, 32, 32), width=args.width)
    return model, optim.build(name, model, input_shape=(3, 32, 32), **OPTIMIZERS[name]), optim.get(name)


def run_steps(model, opt, spec, x, y, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        optim.backward_and_step(spec, opt, loss)
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model", default="resnet34")
    parser.add_argument("--width", type=float, default=0.125)
    parser.add_argument("--batch", type=int, default=128)
    args = parser.parse_args()
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 3, 32, 32, generator=generator)
    y = torch.randint(0, 10, (args.batch,), generator=generator)
    setups = {name: make(name, args) for name in OPTIMIZERS}
    for model, opt, spec in setups.values():  # warm-up, off the clock (ESGD's first step estimates: restart it)
        run_steps(model, opt, spec, x, y, 2)
    setups = {name: make(name, args) for name in OPTIMIZERS}
    rounds: dict[str, list[float]] = {name: [] for name in setups}
    for _ in range(args.rounds):
        for name, (model, opt, spec) in setups.items():
            rounds[name].append(run_steps(model, opt, spec, x, y, args.steps))
    step = {name: statistics.median(times) for name, times in rounds.items()}
    kappa_model = setups["pathsgd"][0]
    kappa_times = []
    for _ in range(5):
        start = time.perf_counter()
        path_kappa(kappa_model, (3, 32, 32))
        kappa_times.append(time.perf_counter() - start)
    kappa = statistics.median(kappa_times)
    env = environment(torch.device("cpu"))
    out = {
        "what": "amortized seconds per training step (forward, backward, step), median of rounds",
        "network": f"{args.model} (CIFAR form) at width {args.width}",
        "batch": args.batch,
        "steps_per_round": args.steps,
        "rounds": args.rounds,
        "optimizers": OPTIMIZERS,
        "step_seconds": step,
        "ratio_to_sgd": {k: v / step["sgd"] for k, v in step.items()},
        "pathsgd_kappa_seconds": kappa,
        "pathsgd_kappa_fraction_of_step": kappa / step["pathsgd"],
        "target_esgd_over_sgd": TARGET_ESGD,
        "machine": {k: env[k] for k in ("device_name", "cpu_count", "torch_threads", "torch", "platform")},
    }
    path = ROOT / "results" / "bench" / "train_step.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print("| optimizer | training step (ms) | × SGD |")
    print("| --- | ---: | ---: |")
    for name, seconds in step.items():
        print(f"| {name} | {seconds * 1e3:.1f} | {out['ratio_to_sgd'][name]:.2f} |")
    print(f"Path-SGD's κ: {kappa * 1e3:.1f} ms, {out['pathsgd_kappa_fraction_of_step']:.1%} of its step")
    print(f"written: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
