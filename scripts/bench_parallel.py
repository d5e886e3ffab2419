"""One run with every core against several runs side by side with one thread each, for every small-scale network.

For each network of `make reproduce-small` at `scale=small` (its small-scale options: width 0.125, ResNet-50 at
batches of 32, AlexNet and VGG-16 with BatchNorm, ...), on the real CIFAR-10 subset of fold 0, SGD trains real
mini-batches for a fixed window of wall time in a fresh process:
- *one*: a single run with `--threads` threads (default: every core);
- *side by side*: `--threads` runs at once, one thread each (`train.threads=1`), their windows aligned on one
  clock; their images/s are summed.
Each process builds its run first (off the clock), takes 3 warm-up steps, then waits for the common start. The
two settings alternate for `--rounds` rounds, and each round's ratio (side by side over one) is recorded; the
median is reported. Then end to end (`--sweep NETWORK`, default resnet34; `--sweep none` leaves it out): the
same sweep of four whole small-scale runs (SGD, LLb-SGD, Adam, NAG on fold 0: their evaluations, logging and
checkpoints, and the launcher's own start-up included) with the basic launcher, one run at a time on every core,
and with `hydra/launcher=cores train.threads=1`, each into a fresh results folder, `--rounds` interleaved rounds,
the wall times and their median ratio. Writes results/bench/parallel.json and Markdown tables on stdout.

    python scripts/bench_parallel.py [--seconds 12] [--rounds 2] [--networks resnet34 alexnet] [--sweep resnet34]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# each small-scale network with the experiment that runs it (the ImageNet networks: the stand-in Table 2)
NETWORKS = {
    "resnet34": "table2_cifar10",
    "resnet50": "table2_cifar10",
    "alexnet": "table2_imagenet",
    "vgg16": "table2_imagenet",
    "googlenet": "table2_imagenet",
    "resnet152": "table2_imagenet",
}
FINGERPRINT = (
    "import json, sys, warnings; warnings.simplefilter('ignore'); from llbbench.data.cifar import "
    "cifar10_fingerprint; print(json.dumps(cifar10_fingerprint(sys.argv[1])))"
)
SETTLE = 1.0  # seconds between the last process ready and the common start


def worker(network: str, threads: int, start_file: Path, seconds: float, data: str) -> dict:
    """In a fresh process: build the run, warm up, wait for the start time in `start_file`, train for `seconds`."""
    import warnings

    import torch
    import torch.nn.functional as F

    from llbbench import config, optim
    from llbbench import run as one_run
    from llbbench.data.cifar import NotOfficialWarning

    warnings.simplefilter("ignore", NotOfficialWarning)  # said once, by the data's fingerprint in the output

    overrides = [f"experiment={NETWORKS[network]}", "scale=small", f"model={network}", "optimizer=sgd", "fold=0",
                 f"dataset.root={data}", "device=cpu", f"train.threads={threads}"]  # fmt: skip
    setup = one_run.prepare(config.compose(overrides))
    batch = setup.config.train.batch_size
    batches = iter(())

    def step() -> int:
        nonlocal batches
        try:
            images, labels = next(batches)
        except StopIteration:
            batches = iter(setup.data.train.batches(batch, torch.randperm(len(setup.data.train)), True))
            images, labels = next(batches)
        loss = F.cross_entropy(setup.model(images), labels)
        setup.optimizer.zero_grad(set_to_none=True)
        optim.backward_and_step(setup.spec, setup.optimizer, loss)
        return len(labels)

    setup.model.train()
    for _ in range(3):
        step()
    print("ready", flush=True)
    while not start_file.exists():
        time.sleep(0.01)
    start = float(start_file.read_text())
    late = time.time() - start
    while time.time() < start:
        time.sleep(0.001)
    images, begun = 0, time.perf_counter()
    while time.perf_counter() - begun < seconds:
        images += step()
    elapsed = time.perf_counter() - begun
    return {"images_per_s": images / elapsed, "threads": torch.get_num_threads(), "late_s": max(late, 0.0)}


def concurrent(network: str, count: int, threads: int, seconds: float, data: str, tmp: Path) -> list[dict]:
    """`count` worker processes with `threads` threads each, their windows started together."""
    start_file = tmp / f"start-{network}-{count}-{time.monotonic_ns()}"
    command = [sys.executable, __file__, "--worker", network, str(threads), str(start_file), str(seconds)]
    command += ["--data", data]
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(count)]
    for proc in procs:  # every process built and warmed up
        line = proc.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"a worker for {network} did not start: {line!r}")
    start_file.write_text(repr(time.time() + SETTLE))
    results = []
    for proc in procs:
        out, _ = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"a worker for {network} failed (exit {proc.returncode})")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


SWEEP = ["-m", "experiment=table2_cifar10", "scale=small", "optimizer=sgd,llb,adam,nag", "fold=0", "device=cpu"]


def sweep_seconds(network: str, launcher: list[str], data: str, results: Path) -> float:
    """Wall seconds of the four-run sweep of `network` under `launcher`, into the empty folder `results`."""
    command = [sys.executable, "-m", "llbbench.cli", "run", *SWEEP, f"model={network}", f"dataset.root={data}",
               f"results_dir={results}", *launcher]  # fmt: skip
    begun = time.perf_counter()
    subprocess.run(command, capture_output=True, text=True, check=True)
    return time.perf_counter() - begun


def measure_sweep(network: str, args, tmp: Path) -> dict:
    one, side = [], []
    for round_ in range(args.rounds):
        one.append(sweep_seconds(network, [], args.data, tmp / f"one-{round_}"))
        side.append(
            sweep_seconds(network, ["hydra/launcher=cores", "train.threads=1"], args.data, tmp / f"cores-{round_}")
        )
    return {
        "network": network,
        "runs": 4,
        "one_at_a_time_s": [round(v, 1) for v in one],
        "side_by_side_s": [round(v, 1) for v in side],
        "ratio": round(statistics.median(o / s for o, s in zip(one, side, strict=True)), 3),
    }


def measure(network: str, args, tmp: Path) -> dict:
    one, side, ratios = [], [], []
    for _ in range(args.rounds):
        alone = concurrent(network, 1, args.threads, args.seconds, args.data, tmp)[0]["images_per_s"]
        together = sum(r["images_per_s"] for r in concurrent(network, args.threads, 1, args.seconds, args.data, tmp))
        one.append(alone)
        side.append(together)
        ratios.append(together / alone)
    return {
        "one_run_images_per_s": [round(v, 1) for v in one],
        "side_by_side_images_per_s": [round(v, 1) for v in side],
        "ratios": [round(r, 3) for r in ratios],
        "ratio": round(statistics.median(ratios), 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=12.0, help="the timed window of each process")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="cores: the one run's threads")
    parser.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=list(NETWORKS))
    parser.add_argument(
        "--sweep", default="resnet34", choices=[*NETWORKS, "none"], help="the end-to-end sweep's network"
    )
    parser.add_argument("--data", default=os.environ.get("LLBBENCH_DATA", str(ROOT / "data")))
    parser.add_argument("--out", default=str(ROOT / "results" / "bench" / "parallel.json"))
    parser.add_argument("--worker", nargs=4, metavar=("NETWORK", "THREADS", "START_FILE", "SECONDS"),
                        help=argparse.SUPPRESS)  # fmt: skip
    args = parser.parse_args()
    if args.worker:
        network, threads, start_file, seconds = args.worker
        print(json.dumps(worker(network, int(threads), Path(start_file), float(seconds), args.data)))
        return 0
    import tempfile

    import torch

    from llbbench.records.environment import environment

    with tempfile.TemporaryDirectory() as tmp:
        results = {network: measure(network, args, Path(tmp)) for network in args.networks}
        sweep = measure_sweep(args.sweep, args, Path(tmp)) if args.sweep != "none" else None
    data = subprocess.run([sys.executable, "-c", FINGERPRINT, args.data], capture_output=True, text=True, check=True)
    out = {
        "what": f"training images/s of SGD at scale=small (fold 0, real CIFAR-10): {args.threads} runs side by side "
        f"with 1 thread each (summed) over one run with {args.threads} threads; {args.rounds} interleaved rounds "
        f"of {args.seconds:g} s windows, the median ratio",
        "command": "python scripts/bench_parallel.py " + " ".join(sys.argv[1:]),
        "networks": results,
        "sweep": sweep,
        "data": json.loads(data.stdout),
        "environment": environment(torch.device("cpu")),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    n = args.threads
    print(f"| network | one run ({n} threads), images/s | {n} runs × 1 thread, images/s (summed) | ratio |")
    print("| --- | ---: | ---: | ---: |")
    for network, r in results.items():
        print(f"| {network} | {statistics.median(r['one_run_images_per_s']):.0f} | "
              f"{statistics.median(r['side_by_side_images_per_s']):.0f} | {r['ratio']:.2f} |")  # fmt: skip
    if sweep:
        print(f"\nend to end, a sweep of {sweep['runs']} {sweep['network']} runs: one at a time "
              f"{statistics.median(sweep['one_at_a_time_s']):.1f} s, side by side "
              f"{statistics.median(sweep['side_by_side_s']):.1f} s: {sweep['ratio']:.2f}x")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
