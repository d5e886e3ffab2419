"""Estimated GPU-hours of each experiment at scale=full (or medium), from counted FLOPs and an assumed rate.

No GPU was available to measure them, so this is an estimate, and it says how it is made. Every run of each
experiment's sweep is composed from conf/ (network, dataset, epochs); a network's forward FLOPs per image are
counted by torch's FlopCounterMode at full width in the form the run uses (CIFAR 32×32 or ImageNet 224×224). A
run costs, per epoch, 3× forward FLOPs per training image (forward + backward), and 1× per validation and test
image in each epoch it evaluates (`train.eval_every`, and the last); ESGD adds one Hessian-vector product (≈ 2
more passes) every `update_every` steps. The epoch budget is taken in full (Fig. 7's plateau rule can only
stop a run earlier, so its hours are an upper bound). GPU-hours
= FLOPs / the sustained rate, `--tflops` (default 30 TFLOP/s: a cautious figure for float32/TF32 training of
these networks on an A100/H100-class GPU; divide by your own GPU's measured rate instead). Data loading, which
bounds ImageNet runs on many machines, is not counted. Writes results/bench/gpu_hours.json and a Markdown table.

When `make bench-gpu` has measured a GPU (results/bench/gpu.json, or `--measured FILE`), each network's measured
training images/s in the runs' default setting there (bf16 with channels_last, the form's batch) replaces the
assumed rate: a run's hours are its training-image equivalents (an evaluated image counted as a third of a
trained one, ESGD's products as above) over that rate; at scale=medium a CIFAR run's rate is also multiplied by
the measured gain of packing several runs on one GPU (`gpus.runs_per_gpu` at make bench-gpu's best k).

`--scale medium`: every experiment of `make reproduce-medium` (llbbench/commands/sweeps.py MEDIUM_PLAN), the
tuning of the CIFAR-10 Table 2 included (four more rates on fold 0, the winner on the other folds at most), into
results/bench/gpu_hours_medium.json.

    python scripts/estimate_gpu_hours.py [--scale full|medium] [--tflops 30] [--measured results/bench/gpu.json]
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from functools import cache
from pathlib import Path

import torch
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf
from torch.utils.flop_counter import FlopCounterMode

from llbbench import models
from llbbench.commands.sweeps import MEDIUM_PLAN, sweep_points
from llbbench.config import CONFIG_PACKAGE  # importing it registers the config's resolvers

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENTS = ("table2_cifar10", "table2_imagenet", "table3_batch", "table4_init", "fig7_lr")
# (training images, test images) of the full datasets (an image folder: by its folder's name); training images
# split into cv.folds folds
SIZES = {"cifar10": (50_000, 10_000), "imagenet": (1_281_167, 50_000), "imagenette2-160": (9_469, 3_925),
         "imagewoof2-160": (9_025, 3_929)}  # fmt: skip
SHAPES = {"cifar10": (10, (3, 32, 32)), "imagenet": (1000, (3, 224, 224))}


def data_of(dataset: dict) -> tuple[str, int, tuple[int, int, int]]:
    """A run's data as this estimate knows it: its key in SIZES, classes and image shape."""
    if dataset["name"] in SHAPES:
        return (dataset["name"], *SHAPES[dataset["name"]])
    folder = Path(str(dataset["root"])).name
    if folder not in SIZES:
        raise SystemExit(f"no image count known for the image folder {dataset['root']}: add it to SIZES")
    return folder, 10, (3, int(dataset["crop"]), int(dataset["crop"]))


@cache
def forward_flops(network: str, dataset: str) -> int:
    """Forward FLOPs for one image of `dataset`'s form, at full width (counted on the meta device)."""
    classes, shape = SHAPES.get(dataset) or FOLDER_SHAPES[dataset]
    with torch.device("meta"):
        model = models.build(network, classes, shape)
        x = torch.empty(1, *shape)
    model.eval()  # dropout off; the same convolutions and products as in training
    with FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops()


FOLDER_SHAPES: dict[str, tuple[int, tuple[int, int, int]]] = {}  # image folders met so far: classes, shape
NO_COST = ("fold=", "init=", "optimizer.lr=")  # overrides that do not change a run's FLOPs


def run_flops(overrides: list[str]) -> tuple[str, str, float, float]:
    """The network, dataset, FLOPs and training-image equivalents of one run (its overrides, `experiment=`
    among them)."""
    return _run_flops(tuple(o for o in overrides if not o.startswith(NO_COST)))


@cache
def _run_flops(overrides: tuple[str, ...]) -> tuple[str, str, float, float]:
    config = compose("config", overrides=list(overrides))
    config = OmegaConf.to_container(config, resolve=True)
    network = config["model"]["name"]
    dataset, classes, shape = data_of(config["dataset"])
    FOLDER_SHAPES.setdefault(dataset, (classes, shape))
    train_images, test_images = SIZES[dataset]
    folds = config["cv"]["folds"]
    train, val = train_images * (folds - 1) / folds, train_images / folds
    forward = forward_flops(network, dataset)
    epochs, every = config["train"]["epochs"], config["train"].get("eval_every", 1)
    every = 1 if config["train"].get("plateau") else every  # a plateau rule evaluates every epoch
    evaluated = len({*range(every, epochs + 1, every), epochs})  # epochs that evaluate validation and test
    images = train * epochs + (val + test_images) / 3 * evaluated  # training-image equivalents of the run
    optimizer = config["optimizer"]
    if optimizer["name"] == "esgd":
        images += 2 * train * epochs / optimizer["update_every"]  # a Hessian-vector product: about two more passes
    return network, dataset, 3 * forward * images, images


def measured_rates(path: Path) -> tuple[dict[tuple[str, str], float], dict]:
    """(network, dataset) → measured training images/s in the default GPU setting (bf16, channels_last), and the
    measured packing (several runs on one GPU: `best_k`, `gain_of_best`), or {} when not measured."""
    if not path.exists():
        return {}, {}
    found = json.loads(path.read_text())
    if found.get("quick") or found.get("device", "cpu") == "cpu":
        return {}, {}  # a CPU check of the script, not a GPU's numbers
    rates = {}
    for row in found["throughput"]:
        if row["precision"] == "bf16" and row["channels_last"] and row["images_per_second"]:
            rates[(row["network"], "cifar10" if row["form"] == "cifar" else "imagenet")] = row["images_per_second"]
    return rates, found.get("packing") or {}


def rate_of(network: str, dataset: str, measured: dict, packing: dict, scale: str) -> float | None:
    """A run's training images/s on the measured GPU, or None (then the FLOP model): the measured single-run rate
    of its network and form, times the measured gain of packing `best_k` runs on a GPU for a CIFAR run at
    scale=medium (gpus.runs_per_gpu; measured on ResNet-34 and taken for every CIFAR network: each of the k
    runs goes at 1/k of the summed rate). An image folder's run (Imagenette) counts at ImageNet's measured rate:
    a 160 px image costs about (160/224)² of a 224 px one, which this leaves out (an upper bound)."""
    form = "cifar10" if dataset == "cifar10" else "imagenet"
    if (network, form) not in measured:
        return None
    gain = packing.get("gain_of_best", 1.0) if scale == "medium" and form == "cifar10" else 1.0
    return measured[(network, form)] * gain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tflops", type=float, default=30.0, help="assumed sustained rate, TFLOP/s")
    parser.add_argument("--measured", type=Path, default=ROOT / "results" / "bench" / "gpu.json")
    parser.add_argument("--scale", choices=("full", "medium"), default="full",
                        help="full: the paper's grids; medium: every experiment of make reproduce-medium, tuning "
                        "included (results/bench/gpu_hours_medium.json)")  # fmt: skip
    args = parser.parse_args()
    rate = args.tflops * 1e12
    measured, packing = measured_rates(args.measured)
    rows, counted = [], set()
    plan = MEDIUM_PLAN if args.scale == "medium" else dict.fromkeys(EXPERIMENTS, ())
    with initialize_config_module(config_module=CONFIG_PACKAGE, version_base="1.3"):
        for experiment, extra in plan.items():
            hours, runs = defaultdict(float), defaultdict(int)
            base = [f"experiment={experiment}", f"scale={args.scale}", *extra]
            sweep = compose("config", overrides=base, return_hydra_config=True)
            for point in sweep_points(sweep):  # the sweep, as Hydra's basic sweeper makes it
                network, dataset, flops, images = run_flops(point)
                counted.add((network, dataset))
                speed = rate_of(network, dataset, measured, packing, args.scale)
                cost = images / speed if speed else flops / rate
                # the tuning of the CIFAR-10 Table 2 at medium scale: four more rates on fold 0, and every other
                # fold again at the winner (at most: a winner at the configured rate is the same run)
                times = 1
                if args.scale == "medium" and experiment == "table2_cifar10":
                    times += 4 if "fold=0" in point else 1
                hours[network] += times * cost / 3600
                runs[network] += times
            for network in hours:
                rows.append(
                    {"experiment": experiment, "network": network, "runs": runs[network], "gpu_hours": hours[network]}
                )
    out = {
        "estimate": (
            f"measured images/s from {args.measured.name} where present ({len(measured)} network forms), else "
            "counted FLOPs / assumed sustained rate"
            if measured
            else "counted FLOPs / assumed sustained rate; not measured (no GPU was available)"
        ),
        "measured_images_per_second": {f"{n}/{d}": r for (n, d), r in sorted(measured.items())},
        "packing": (
            {**packing, "applied": "CIFAR runs at scale=medium" if args.scale == "medium" else "no (scale=full)"}
            if packing
            else "not measured: one run per GPU"
        ),
        "assumed_tflops": args.tflops,
        "forward_gflops_per_image": {f"{n}/{d}": forward_flops(n, d) / 1e9 for n, d in sorted(counted)},
        "rows": rows,
        "scale": args.scale,
        "total_gpu_hours": {e: sum(r["gpu_hours"] for r in rows if r["experiment"] == e) for e in plan},
        "all_gpu_hours": sum(r["gpu_hours"] for r in rows),
    }
    path = ROOT / "results" / "bench" / ("gpu_hours_medium.json" if args.scale == "medium" else "gpu_hours.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    basis = "measured images/s where present" if measured else f"{args.tflops:g} TFLOP/s"
    print(f"| experiment | runs | GPU-hours at {basis} | by network |\n| --- | ---: | ---: | --- |")
    for experiment in plan:
        mine = [r for r in rows if r["experiment"] == experiment]
        detail = ", ".join(f"{r['network']} {r['gpu_hours']:,.0f}" for r in mine)
        total = sum(r["gpu_hours"] for r in mine)
        print(f"| `{experiment}` | {sum(r['runs'] for r in mine)} | {total:,.0f} | {detail} |")
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
