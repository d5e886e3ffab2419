"""Time the README's reference run: `llbbench run optimizer=adam model=smallcnn dataset.subset=5000 train.epochs=2`.

Runs the real command line on the real CIFAR-10 (dataset.root, default $LLBBENCH_DATA or ./data), reads back the
run directory, and writes results/bench/run_smoke.json plus a Markdown table on stdout.

    python scripts/bench_run.py [--repeats N] [extra overrides...]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
COMMAND = ["optimizer=adam", "model=smallcnn", "dataset.subset=5000", "train.epochs=2"]


def one_run(extra: list[str], results: Path) -> dict:
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "llbbench.cli", "run", *COMMAND, *extra, f"results_dir={results}"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    wall = time.perf_counter() - started
    if out.returncode != 0:
        sys.exit(f"the run failed:\n{out.stderr[-3000:]}")
    run_dir = Path(out.stdout.strip().splitlines()[-1].split("results in ")[1])
    summary = json.loads((run_dir / "summary.json").read_text())
    with (run_dir / "epochs.csv").open() as f:
        epochs = list(csv.DictReader(f))
    return {
        "command_seconds": round(wall, 2),
        "run_seconds": summary["seconds"],
        "train_seconds_per_epoch": [float(r["seconds"]) for r in epochs],
        "eval_seconds_per_epoch": [float(r["eval_seconds"]) for r in epochs],
        "final_test_acc": summary["final"]["test_acc"],
        "env": json.loads((run_dir / "env.json").read_text()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides")
    args = parser.parse_args()
    runs = []
    for _ in range(args.repeats):  # a fresh results folder each time: a finished run would be skipped
        with tempfile.TemporaryDirectory() as tmp:
            runs.append(one_run(args.overrides, Path(tmp)))
    env = runs[0].pop("env")
    for r in runs[1:]:
        r.pop("env")
    result = {
        "command": "llbbench run " + " ".join(COMMAND + args.overrides),
        "machine": {
            "device": env["device"],
            "device_name": env["device_name"],
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "platform": platform.platform(),
        },
        "runs": runs,
    }
    out = ROOT / "results" / "bench" / "run_smoke.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print("| command | device | whole command (s) | training, per epoch (s) | evaluation, per epoch (s) |")
    print("| --- | --- | ---: | ---: | ---: |")
    for r in runs:
        train = sum(r["train_seconds_per_epoch"]) / len(r["train_seconds_per_epoch"])
        evals = sum(r["eval_seconds_per_epoch"]) / len(r["eval_seconds_per_epoch"])
        print(
            f"| `{result['command']}` | {env['device_name']} ({os.cpu_count()} cores) | {r['command_seconds']:.1f} "
            f"| {train:.1f} | {evals:.1f} |"
        )
    print(f"written: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
