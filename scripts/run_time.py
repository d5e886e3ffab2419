"""How long a results folder took to train: per experiment, the runs' recorded seconds summed, and the same with
each run's steps counted at the median seconds per step of its kind (experiment, network, optimizer, batch size),
which a run slowed down by other work on the machine (or paused) cannot inflate.

    python scripts/run_time.py results/small

The recorded seconds are each run's training and evaluation time (`summary.json`). Runs that record their
start-up (`setup_seconds`: checks, data, network, from the run's start to its first step) and when they started
and ended also give the start-up summed and the wall time from the first start to the last end (runs side by
side overlap in it; the gaps between runs, composing their configs, are in it).
"""

from __future__ import annotations

import argparse
import sys

import pandas as pd

from llbbench.report.runs import load_runs


def run_time(runs: pd.DataFrame) -> pd.DataFrame:
    """Per experiment: runs, recorded minutes, and minutes with every step at its kind's median."""
    timed = runs[runs["seconds"].notna() & (runs["steps"] > 0)].copy()
    kind = ["experiment", "model", "optimizer", "batch_size"]
    per_step = (timed["seconds"] / timed["steps"]).groupby([timed[k] for k in kind]).transform("median")
    timed["typical"] = per_step * timed["steps"]
    table = timed.groupby("experiment").agg(runs=("seconds", "size"), recorded=("seconds", "sum"),
                                            typical=("typical", "sum"))  # fmt: skip
    table.loc["all"] = table.sum()
    table[["recorded", "typical"]] /= 60
    table["startup"] = table["wall"] = float("nan")
    if "setup_seconds" in timed and timed["setup_seconds"].notna().any():
        stamped = timed[timed["setup_seconds"].notna()]
        for experiment, of in [*stamped.groupby("experiment"), ("all", stamped)]:
            table.loc[experiment, "startup"] = of["setup_seconds"].sum() / 60
            span = pd.to_datetime(of["ended"]).max() - pd.to_datetime(of["started"]).min()
            table.loc[experiment, "wall"] = span.total_seconds() / 60
    return table.round(1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", help="results folders, e.g. results/small")
    args = parser.parse_args()
    runs, _ = load_runs(args.dirs)
    if runs.empty:
        print(f"no run directories under {', '.join(args.dirs)}", file=sys.stderr)
        return 2
    table = run_time(runs)
    print("| experiment | runs | recorded minutes | minutes at each kind's median per step | start-up minutes | "
          "wall minutes |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for experiment, row in table.iterrows():
        extra = " | ".join("—" if pd.isna(row[k]) else f"{row[k]:.1f}" for k in ("startup", "wall"))
        print(f"| {experiment} | {int(row['runs'])} | {row['recorded']:.1f} | {row['typical']:.1f} | {extra} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
