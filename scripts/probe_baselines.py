"""Probes behind docs/baselines.md's measurements of the two baselines no library ships.

python scripts/probe_baselines.py kappa resnet34 [--zero-init-residual]
    Path-SGD's κ at initialization on a small-scale network (CIFAR form, width 0.125): each parameter's
    median κ, and their smallest and largest.
python scripts/probe_baselines.py saddle esgd [OVERRIDE ...]
    Fig. 8's saddle (experiment=fig8_saddle, real CIFAR-10 under data/) for one optimizer, seeds 0-4,
    `--steps` steps (default 100): each seed's escape step (or "never") and whether it diverged.
"""

from __future__ import annotations

import argparse
import warnings

import torch

from llbbench import models
from llbbench.commands import saddle
from llbbench.optim import path_kappa


def kappa(network: str, zero_init_residual: bool) -> None:
    torch.manual_seed(0)
    options = {"zero_init_residual": True} if zero_init_residual else {}
    model = models.build(network, 10, (3, 32, 32), width=0.125, **options)
    medians = {name: float(k.median()) for name, k in path_kappa(model, (3, 32, 32)).items() if k is not None}
    for name, value in medians.items():
        print(f"{name:45s} median κ {value:.3g}")
    print(f"{len(medians)} parameters with κ; medians from {min(medians.values()):.3g} to {max(medians.values()):.3g}")


def escapes(optimizer: str, overrides: list[str], steps: int) -> None:
    warnings.filterwarnings("ignore")
    base = ["experiment=fig8_saddle", "results_dir=/tmp/llbbench-probe", f"saddle.steps={steps}", *overrides]
    shown = []
    for seed in range(5):
        path = saddle.trajectory(saddle.compose(base, optimizer, seed))
        escape = "never" if path["escape"] is None else str(path["escape"])
        shown.append(escape + (" (diverged)" if path["status"] == "diverged" else ""))
    print(f"{optimizer} {' '.join(overrides) or '(defaults)'}: {', '.join(shown)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    k = commands.add_parser("kappa")
    k.add_argument("network")
    k.add_argument("--zero-init-residual", action="store_true")
    s = commands.add_parser("saddle")
    s.add_argument("optimizer")
    s.add_argument("overrides", nargs="*")
    s.add_argument("--steps", type=int, default=100)
    args = parser.parse_args()
    if args.command == "kappa":
        kappa(args.network, args.zero_init_residual)
    else:
        escapes(args.optimizer, args.overrides, args.steps)


if __name__ == "__main__":
    main()
