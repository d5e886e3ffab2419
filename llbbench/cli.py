"""The `llbbench` command line: it only parses and dispatches."""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"

USAGE = """\
usage: llbbench COMMAND [ARGS]

Reproduce and re-examine Zheng et al. (2019), "Layer-wise learning based stochastic gradient descent".

commands:
  run      train one run (or, with --multirun/-m, a sweep) configured by Hydra overrides,
           e.g. `llbbench run optimizer=adam train.epochs=2`; `llbbench run --help` lists the config groups
  report   the paper's tables, figures and a claims check from run directories:
           `llbbench report results/table2_cifar10 [DIR ...] [--out OUT] [--formats md,tex,csv]`

`llbbench COMMAND --help` says more about each command.
"""

COMMANDS = ("run", "report")


def _run_id(*, _root_: DictConfig) -> str:
    """The `${run_id:}` resolver: the run's identity from the config it is part of (Hydra's own node aside)."""
    from .runs import run_id

    config = OmegaConf.masked_copy(_root_, [key for key in _root_ if key != "hydra"])
    return run_id(OmegaConf.to_container(config, resolve=True))


def _pick(key: str, table: DictConfig) -> object:
    """The `${pick:KEY,{a: 1, b: 2, default: 3}}` resolver: the table's value for KEY, else its `default`."""
    if key in table:
        return table[key]
    if "default" not in table:
        raise ValueError(f"pick: no value for {key!r} and no default in {dict(table)}")
    return table["default"]


OmegaConf.register_new_resolver("run_id", _run_id, replace=True)
OmegaConf.register_new_resolver("pick", _pick, replace=True)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def _run(cfg: DictConfig) -> str:
    from . import sweeps, train  # imported here so that `llbbench --help` stays fast

    # warnings (e.g. a dataset that is not the official release) become one log line of the run, in whatever
    # process a launcher runs it
    warnings.formatwarning = lambda message, category, *_, **__: f"{category.__name__}: {message}"
    logging.captureWarnings(True)
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    sweeps.announce(run_dir)
    try:
        status = train.execute(cfg, run_dir)
    except (ValueError, FileNotFoundError) as e:  # bad input: nothing was trained, nothing is recorded
        print(f"llbbench run: error: {e}", file=sys.stderr)
        if hydra_cfg.mode == RunMode.RUN:
            sys.exit(2)
        status = "failed"  # in a sweep the other runs go on
    sweeps.report(status, run_dir)
    print(f"run {status}: results in {run_dir}", flush=True)
    if status == "failed" and hydra_cfg.mode == RunMode.RUN:
        sys.exit(1)
    return status


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0
    command, rest = argv[0], argv[1:]
    if command == "run":
        sys.argv = ["llbbench run", *rest]  # Hydra parses sys.argv
        _run()
        return 0
    if command == "report":
        return report(rest)
    print(f"llbbench: unknown command {command!r}; valid commands: {', '.join(COMMANDS)}", file=sys.stderr)
    return 2


def report(argv: list[str]) -> int:
    """`llbbench report`: parse, build, and say where the report is."""
    from .report import FORMATS, build_report

    parser = argparse.ArgumentParser(
        prog="llbbench report",
        description="Write the paper's Tables 1-4 (Markdown, LaTeX, CSV), Figures 5-8 (PNG, PDF) and claims.md "
        "from run directories (found recursively under each DIR).",
    )
    parser.add_argument("dirs", nargs="+", metavar="DIR", help="results folders, e.g. results/table2_cifar10")
    parser.add_argument("--out", help="where to write the report (default: DIR/report of the first DIR)")
    parser.add_argument("--formats", default=",".join(FORMATS), help=f"table formats (default {','.join(FORMATS)})")
    args = parser.parse_args(argv)
    try:
        out = build_report(args.dirs, args.out, [f.strip() for f in args.formats.split(",") if f.strip()])
    except (ValueError, FileNotFoundError) as e:
        print(f"llbbench report: error: {e}", file=sys.stderr)
        return 2
    print(f"report written: {out / 'report.md'} (claims: {out / 'claims.md'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
