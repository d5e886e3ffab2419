"""Parameter counts of every network in both forms, and training throughput at CPU-scale width.

Counts are for 10 classes (CIFAR-10) and 1,000 classes (ImageNet) at width 1. Throughput is forward + backward +
SGD step, in images per second, at `--width` (the CPU-scale width), on random data: the CIFAR form on 32×32
batches of 128, the ImageNet form on 224×224 batches of 16. Writes results/bench/networks.json and a Markdown
table on stdout.

    python scripts/bench_networks.py [--width 0.125] [--steps 5]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from llbbench import models
from llbbench.records.environment import environment

ROOT = Path(__file__).resolve().parent.parent
NETWORKS = ("resnet34", "resnet50", "resnet152", "alexnet", "vgg16", "googlenet")
FORMS = {"cifar": (10, 32, 128), "imagenet": (1000, 224, 16)}  # classes, input size, batch


def count(name: str, form: str, width: float = 1.0) -> int:
    classes, size, _ = FORMS[form]
    with torch.device("meta"):
        return models.num_parameters(models.build(name, classes, (3, size, size), form=form, width=width))


def throughput(name: str, form: str, width: float, steps: int) -> float:
    classes, size, batch = FORMS[form]
    torch.manual_seed(0)
    model = models.build(name, classes, (3, size, size), form=form, width=width)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(batch, 3, size, size), torch.randint(0, classes, (batch,))
    elapsed = []
    for i in range(steps + 2):  # two warm-up steps
        start = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= 2:
            elapsed.append(time.perf_counter() - start)
    return batch / sorted(elapsed)[len(elapsed) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=float, default=0.125)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    rows = []
    for name in NETWORKS:
        row = {"network": name}
        for form in FORMS:
            row[f"{form}_params"] = count(name, form)
            row[f"{form}_params_at_width"] = count(name, form, args.width)
            row[f"{form}_images_per_second"] = round(throughput(name, form, args.width, args.steps), 1)
        rows.append(row)
        print(row, flush=True)
    env = environment(torch.device("cpu"))
    out = {
        "width": args.width,
        "steps_timed": args.steps,
        "batch": {form: spec[2] for form, spec in FORMS.items()},
        "machine": {k: env[k] for k in ("device_name", "cpu_count", "torch_threads", "torch", "platform")},
        "cpu_count": os.cpu_count(),
        "networks": rows,
    }
    path = ROOT / "results" / "bench" / "networks.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    w = args.width
    print(
        f"| network | CIFAR form: params | at width {w} | images/s | ImageNet form: params | at width {w} | images/s |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        cells = [
            f"{r[f'{form}_{key}']:,}" for form in FORMS for key in ("params", "params_at_width", "images_per_second")
        ]
        print(f"| {r['network']} | " + " | ".join(cells) + " |")
    print(f"written: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
