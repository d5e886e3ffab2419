"""Time one `step()` of LLb-SGD against torch's SGD (foreach, without and with momentum) and Adam.

All optimizers step over ResNet-50's parameters (torchvision, ImageNet form, 25.6 M) with the same fixed random
gradients and the same weight decay, side by side in one run; the median of the repeats is reported. Runs on
the CPU, and on CUDA too when present. Writes results/bench/optim_step.json and a Markdown table on stdout.

    python scripts/bench_optim_step.py [--repeats 30] [--warmup 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torchvision

from llbbench.optim import LLbSGD, layer_groups
from llbbench.records.environment import environment

ROOT = Path(__file__).resolve().parent.parent
WEIGHT_DECAY = 5e-4
TARGET = 1.5  # docs/scales.md: LLb-SGD step() at most 1.5x plain foreach SGD
# LLbSGD(foreach=None), the default, takes the multi-tensor path on CUDA and the per-tensor loop on the CPU

CANDIDATES: dict[str, Callable[[torch.nn.Module], torch.optim.Optimizer]] = {
    "sgd_foreach": lambda m: torch.optim.SGD(m.parameters(), lr=0.1, weight_decay=WEIGHT_DECAY, foreach=True),
    "sgd_momentum_foreach": lambda m: torch.optim.SGD(
        m.parameters(), lr=0.1, momentum=0.9, weight_decay=WEIGHT_DECAY, foreach=True
    ),
    "adam_foreach": lambda m: torch.optim.Adam(m.parameters(), lr=1e-3, weight_decay=WEIGHT_DECAY, foreach=True),
    "llb_foreach": lambda m: LLbSGD(layer_groups(m), lr=0.1, weight_decay=WEIGHT_DECAY, foreach=True),
    "llb_per_tensor_loop": lambda m: LLbSGD(layer_groups(m), lr=0.1, weight_decay=WEIGHT_DECAY, foreach=False),
}


def time_steps(device: torch.device, repeats: int, warmup: int) -> dict[str, float]:
    """Median seconds per step() of each candidate, interleaved so that drift hits them all alike."""
    torch.manual_seed(0)
    setups = {}
    for name, make in CANDIDATES.items():
        model = torchvision.models.resnet50().to(device)
        generator = torch.Generator().manual_seed(1)
        for p in model.parameters():
            p.grad = torch.randn(p.shape, generator=generator).mul_(1e-3).to(device)
        setups[name] = make(model)
    losses = [2.3 + 0.01 * (i % 7) for i in range(warmup + repeats)]  # rising and falling: both gate branches
    times: dict[str, list[float]] = {name: [] for name in setups}
    for i in range(warmup + repeats):
        for name, opt in setups.items():
            sync(device)
            start = time.perf_counter()
            if isinstance(opt, LLbSGD):
                opt.step(loss=losses[i])
            else:
                opt.step()
            sync(device)
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    results = []
    for device in devices:
        medians = time_steps(device, args.repeats, args.warmup)
        base = medians["sgd_foreach"]
        name = environment(device)["device_name"]
        results.append(
            {
                "device": str(device),
                "device_name": name,
                "median_seconds": medians,
                "ratio_to_sgd_foreach": {k: v / base for k, v in medians.items()},
            }
        )
    out = {
        "what": "median seconds of one optimizer step() over ResNet-50's parameters, fixed random gradients",
        "weight_decay": WEIGHT_DECAY,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "target_llb_over_sgd": TARGET,
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "results": results,
    }
    path = ROOT / "results" / "bench" / "optim_step.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print("| device | optimizer | step (ms, median) | × SGD (foreach) |")
    print("| --- | --- | ---: | ---: |")
    for r in results:
        for k, v in r["median_seconds"].items():
            print(f"| {r['device']} | {k} | {v * 1e3:.1f} | {r['ratio_to_sgd_foreach'][k]:.2f} |")
    print(f"written: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
