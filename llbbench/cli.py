"""The `llbbench` command line: it only parses and dispatches."""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from omegaconf import DictConfig

USAGE = """\
usage: llbbench COMMAND [ARGS]

Reproduce and re-examine Zheng et al. (2019), "Layer-wise learning based stochastic gradient descent".

commands:
  run      train one run (or, with --multirun/-m, a sweep) configured by Hydra overrides,
           e.g. `llbbench run optimizer=adam train.epochs=2`; `llbbench run --help` lists the config groups
  tune     the initial rate of every (network, optimizer) of an experiment's sweep, on one fold:
           `llbbench tune experiment=table2_cifar10 scale=small`; then `llbbench run -m experiment=... tuned=true`
  prepare-data  decode an image-folder dataset once into arrays that `dataset.format=predecoded` reads:
           `llbbench prepare-data dataset=imagenet dataset.root=/data/imagenet`
  saddle   Fig. 8 on a network: every optimizer from a start next to a saddle point, several seeds:
           `llbbench saddle experiment=fig8_saddle scale=small results_dir=results/small`
  torchrun one run on several processes (DistributedDataParallel), each problem said once:
           `llbbench torchrun --standalone --nproc-per-node=2 run model=resnet20`
  report   the paper's tables, figures and a claims check from run directories:
           `llbbench report results/table2_cifar10 [DIR ...] [--out OUT] [--formats md,tex,csv]`

`llbbench COMMAND --help` says more about each command; `llbbench --version` (or -V) prints the version.
"""

COMMANDS = ("run", "tune", "prepare-data", "saddle", "torchrun", "report")
TRAINING = ("run", "tune", "saddle", "prepare-data", "torchrun")  # the commands that load torch to train or decode
INTERRUPTED = "interrupted: run the same command to go on"  # Ctrl-C without a message of its own


def _run(cfg: DictConfig) -> str:
    """Hydra's task function: one run, in whatever process a launcher puts it."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from . import run as one_run  # imported here so that `llbbench --help` stays fast
    from .backend import distributed, lifetime
    from .commands import sweeps

    lifetime.watch_parent()  # in a launcher's worker process: it ends when the sweep's command does
    rank = distributed.process_rank()  # of a run trained by several processes (torchrun, Slurm tasks)
    if rank > 0:
        _follow()
    # warnings (e.g. a dataset that is not the official release) become one log line of the run, in whatever
    # process a launcher runs it
    warnings.formatwarning = lambda message, category, *_, **__: f"{category.__name__}: {message}"
    logging.captureWarnings(True)
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    if rank == 0:
        sweeps.announce(run_dir)
    logging.raiseExceptions = False  # a log file on a full disk: no traceback of logging's own per record
    try:
        status = one_run.execute(cfg, run_dir)
    except (ValueError, FileNotFoundError) as e:  # bad input: nothing was trained, nothing is recorded
        print(f"llbbench run: error: {e}", file=sys.stderr)
        if hydra_cfg.mode == RunMode.RUN:
            sys.exit(2)
        status = "failed"  # in a sweep the other runs go on
    except (one_run.NoSpace, one_run.RankFailed) as e:  # a full disk stops a sweep; a failed rank, its run's processes
        print(f"llbbench run: error: {e}", file=sys.stderr)
        sys.exit(1)
    if rank == 0:
        sweeps.report(status, run_dir)
    line = f"{f'rank {rank}: ' if rank else ''}run {status}: results in {run_dir}"
    print(line, flush=True)
    if rank == 0:
        from .records.run import to_log_file

        to_log_file(line)
    if status == "failed" and hydra_cfg.mode == RunMode.RUN:
        sys.exit(1)
    return status


def _follow() -> None:
    """A process of a distributed run other than rank 0: it logs warnings and errors to stderr only (rank 0
    writes the run's log and its directory; `llbbench torchrun` says each of these lines once)."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, logging.StreamHandler)]:
        if isinstance(handler, logging.FileHandler):
            root.removeHandler(handler)
            handler.close()
        else:
            handler.setStream(sys.stderr)
    logging.getLogger("llbbench").setLevel(logging.WARNING)


def run(argv: list[str]) -> int:
    """`llbbench run`: Hydra parses the overrides, composes the config from the package's `conf/`, launches."""
    import hydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from . import config  # registers the config's resolvers
    from .backend.distributed import process_rank

    if process_rank() > 0:  # torchrun's other processes: rank 0 writes Hydra's files in the run directory
        argv = [*argv, "hydra.output_subdir=null"]
    # Hydra parses sys.argv; a completion script it installs is for the program `llbbench` (the function it
    # installs then asks `llbbench -sc query=bash`, which `complete` answers)
    program = "llbbench" if any(a.startswith(("install=", "uninstall=")) for a in argv if a) and "-sc" in argv else \
        "llbbench run"  # fmt: skip
    sys.argv = [program, *config.with_search_path(argv)]
    # Hydra prints its own errors over several lines, and tracebacks, unless HYDRA_FULL_ERROR is set: then it
    # raises them, and they are said here in one line (a user who sets it gets Hydra's full report)
    full_error = "HYDRA_FULL_ERROR" in os.environ
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    try:
        hydra.main(version_base="1.3", config_path=config.SEARCH_PATH, config_name=config.CONFIG_NAME)(_run)()
    except SystemExit as e:  # Hydra's --help exits; its list of groups shows llbbench's own options only
        added = config.added_group_options() if not e.code and any(a in ("-h", "--help") for a in argv) else {}
        if added:
            print("\n== Options that your config folders and plug-ins add ==")
            print("\n".join(f"{group}: {', '.join(options)}" for group, options in added.items()))
        raise
    except (HydraException, OmegaConfBaseException, ValueError, FileNotFoundError) as e:
        if full_error:
            raise
        print(f"llbbench run: error: {config.error_line(e, argv)}", file=sys.stderr)
        return 2
    except OSError as e:  # Hydra's own files on a full disk, or in a folder this user cannot write in
        if full_error or e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EROFS):
            raise
        print(f"llbbench run: error: cannot write {e.filename or 'the run directory'}: {e.strerror}", file=sys.stderr)
        return 1
    finally:
        if not full_error:
            del os.environ["HYDRA_FULL_ERROR"]
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0
    command, rest = argv[0], argv[1:]
    from .backend import lifetime

    lifetime.watch_parent()  # started by another llbbench command (tune's sweeps): it ends with that command
    lifetime.adopt_children()  # and what it starts (a sweep's workers, tune's sweeps) ends with it
    try:
        lifetime.stop_on_terminate()  # SIGTERM stops a command as Ctrl-C does, from here on
        from .commands import torchrun

        torchrun.capture_stderr()  # a process that `llbbench torchrun` started: it says each problem once
        if command in TRAINING and not {"-h", "--help"} & set(rest):
            with lifetime.stops_held():  # torch's own import of numpy would swallow a stop (backend/lifetime.py)
                import numpy  # noqa: F401
                import torch  # noqa: F401
        return _dispatch(command, rest)
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM (backend/lifetime.py), at any moment: what is done stays done
        print(f"llbbench {command}: {str(e) or INTERRUPTED}", file=sys.stderr)
        return 130


def _dispatch(command: str, rest: list[str]) -> int:
    if command == "-sc":  # the shell's completion function asks (`llbbench run -sc install=bash` installed it)
        return complete(rest)
    try:
        rest = use_config_dirs(rest)
    except ValueError as e:
        print(f"llbbench {command}: error: {e}", file=sys.stderr)
        return 2
    if command in ("--version", "-V") or (command in ("run", "tune") and "--version" in rest):
        from . import __version__

        print(f"llbbench {__version__}")
        return 0
    if command == "run":
        return run(rest)
    if command == "tune":
        return tune(rest)
    if command == "saddle":
        return saddle(rest)
    if command == "prepare-data":
        return prepare_data(rest)
    if command == "report":
        return report(rest)
    if command == "torchrun":
        from .commands import torchrun

        return torchrun.main(rest)
    print(f"llbbench: unknown command {command!r}; valid commands: {', '.join(COMMANDS)}", file=sys.stderr)
    return 2


def complete(argv: list[str]) -> int:
    """`llbbench -sc query=SHELL`, as the completion function installed by `llbbench run -sc install=SHELL` asks it
    (the line typed so far in COMP_LINE): the commands while the first word is typed; for `run` and `tune`, Hydra's
    completion of the config (their overrides are the same), on the line without the command."""
    line = os.environ.get("COMP_LINE", "")
    words = line.split()
    typing_command = len(words) < 2 or (len(words) == 2 and not line.endswith(" "))
    if typing_command:
        print(" ".join(c for c in COMMANDS if c.startswith(words[1] if len(words) == 2 else "")))
        return 0
    if words[1] not in ("run", "tune"):
        return 0  # the other commands take no config overrides to complete
    command_end = line.index(words[1]) + len(words[1])
    os.environ["COMP_LINE"] = line[: command_end - len(words[1])] + line[command_end:].lstrip()
    point = int(os.environ.get("COMP_POINT", len(line)))
    os.environ["COMP_POINT"] = str(max(0, point - (len(line) - len(os.environ["COMP_LINE"]))))
    return run(["-sc", *argv])


CONFIG_DIR_OPTIONS = ("--config-dir", "-cd")
CONFIG_PATH_ENV = "LLBBENCH_CONFIG_PATH"  # config.CONFIG_PATH_ENV, named here so that help needs no import


def use_config_dirs(argv: list[str]) -> list[str]:
    """`argv` without its `--config-dir DIR` options (Hydra's spelling, for every command): each DIR goes first in
    LLBBENCH_CONFIG_PATH. Every folder there is then on the module path of this process and, through PYTHONPATH,
    of every process it starts (a sweep's workers, tune's sweeps, Slurm jobs), so that a `_target_` class kept
    beside its config imports everywhere."""
    rest, dirs, args = [], [], iter(argv)
    for arg in args:
        option, equals, value = arg.partition("=")
        if option not in CONFIG_DIR_OPTIONS:
            rest.append(arg)
            continue
        value = value if equals else next(args, "")
        if not value:
            raise ValueError(f"{option} needs a folder: {option} DIR")
        dirs.append(str(Path(value).expanduser().resolve()))
    if not dirs and not os.environ.get(CONFIG_PATH_ENV):
        return rest  # (and `llbbench report --help` stays fast: nothing of the config is imported)
    from . import config

    if dirs:
        os.environ[config.CONFIG_PATH_ENV] = os.pathsep.join([*dirs, os.environ.get(config.CONFIG_PATH_ENV, "")])
    folders = [str(folder) for folder in config.user_config_dirs()]
    for folder in reversed(folders):
        if folder not in sys.path:
            sys.path.insert(0, folder)
    known = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    if any(folder not in known for folder in folders):
        os.environ["PYTHONPATH"] = os.pathsep.join([*(f for f in folders if f not in known), *filter(None, known)])
    return rest


PREPARE_HELP = """\
usage: llbbench prepare-data dataset=imagenet|imagefolder dataset.root=DIR [OVERRIDE ...]

Decodes the train and test splits of an image folder once, exactly as a run's folder pipeline does (RGB, resize,
centre crop), into uint8 arrays with their labels and a manifest, under DIR/.predecoded/ (or
dataset.predecoded_dir). Runs with dataset.format=predecoded then read them without decoding and end with the
same weights. The manifest records the folder's fingerprint: after files change, a run asks for this again.
"""


def prepare_data(argv: list[str]) -> int:
    """`llbbench prepare-data`: write an image folder's predecoded arrays and say where."""
    answered = _help_or_bad_option("prepare-data", argv, PREPARE_HELP)
    if answered is not None:
        return answered
    from omegaconf import OmegaConf

    from . import config, data
    from .data import predecoded

    def work() -> str:
        options = OmegaConf.to_container(config.check(config.compose(argv)).dataset, enum_to_str=True)
        if options["name"] == "cifar10":
            raise ValueError("CIFAR-10 is held as one tensor already; prepare-data is for image folders "
                             "(dataset=imagenet or dataset=imagefolder dataset.root=DIR)")  # fmt: skip
        return f"predecoded arrays written: {predecoded.prepare(options, data.fingerprint(options)).parent}"

    return _guarded("prepare-data", work, argv)


SADDLE_HELP = """\
usage: llbbench saddle [--analytic] experiment=fig8_saddle [OVERRIDE ...]

Fig. 8 on a network (experiment/fig8_saddle.yaml): a one-hidden-layer perceptron started next to the saddle
point at zero weights, trained on real mini-batches by each of the paper's nine optimizers at its configured
rate, for saddle.steps steps and saddle.seeds seeds. Records each optimizer's loss on a fixed batch after every
step, its escape step (the loss saddle.escape_drop below its start), and the first seed's trajectories on the
two principal components of the weights, in <results_dir>/<experiment_name>/saddle.json; `llbbench report`
draws it and judges claim 7 on it. Done again only when its configs change (or with rerun=true).

Beside it, saddle_analytic.json: every optimizer that needs no network on two analytic saddles (Fig. 8's lower
panels). --analytic writes that file alone (a second; no data needed), e.g. `llbbench saddle --analytic
experiment=quickstart` for the quick start's report.
"""


def saddle(argv: list[str]) -> int:
    """`llbbench saddle`: measure Fig. 8 on a network and say where it is."""
    analytic = "--analytic" in argv
    argv = [a for a in argv if a != "--analytic"]
    answered = _help_or_bad_option("saddle", argv, SADDLE_HELP, takes="--analytic")
    if answered is not None:
        return answered
    from .commands import saddle as measurement

    overrides = [a for a in argv if a != "rerun=true"]
    if not any(a.startswith("experiment=") for a in overrides):
        overrides.insert(0, "experiment=fig8_saddle")
    if analytic:
        return _guarded("saddle", lambda: f"analytic saddles written: {measurement.write_analytic(overrides)}",
                        overrides)  # fmt: skip
    rerun = len(overrides) < len(argv)
    return _guarded("saddle", lambda: f"saddle measurement written: {measurement.measure(overrides, rerun=rerun)}",
                    overrides)  # fmt: skip


TUNE_HELP = """\
usage: llbbench tune experiment=NAME [OVERRIDE ...]

For every (network, optimizer) of the experiment's sweep (an optimizer with a schedule, or LLb-SGD with
groups=global, counts as its own), train five initial rates spaced by sqrt(10) around its configured rate on
fold tune.fold (default 0), at the experiment's budget; the lowest final validation loss wins (diverged: +inf;
ties: the smaller rate); a winner on the grid's edge extends it, at most tune.max_extend (2) times. The runs are
ordinary runs of the experiment (skipped when done, resumable; hydra/launcher=... works). Writes
<results_dir>/<experiment_name>/tuning.json; `llbbench run -m experiment=NAME tuned=true` runs the grid at the
winners. Overrides are those of `llbbench run`, e.g. scale=small results_dir=results/small.
"""


def tune(argv: list[str]) -> int:
    """`llbbench tune`: tune the experiment's rates and say where the result is."""
    if not argv:
        print(TUNE_HELP, end="", file=sys.stderr)
        return 2
    answered = _help_or_bad_option("tune", argv, TUNE_HELP)
    if answered is not None:
        return answered
    from .commands import tune as tuning

    def work() -> str:
        path = tuning.tune(argv)
        lines = [
            f"{e['network']} × {e['optimizer']}: {e['winner']:.4g}" + (" (on the grid's edge)" if e["edge"] else "")
            for e in json.loads(path.read_text())
        ]
        return "\n".join([*lines, f"tuning written: {path}"])

    return _guarded("tune", work, argv)


def _help_or_bad_option(command: str, argv: list[str], usage: str, takes: str = "") -> int | None:
    """For a command that takes overrides (and the options `takes` names, already taken out of `argv`): its help for
    -h/--help (0), its usage and one line for any other option (2), else None."""
    if any(a in ("-h", "--help") for a in argv):
        print(usage, end="")
        return 0
    options = [a for a in argv if a.startswith("-")]
    if options:
        print(usage, file=sys.stderr)
        takes = f"{takes} and " if takes else ""
        print(f"llbbench {command}: error: unknown option {options[0]}: this command takes {takes}overrides only "
              "(KEY=VALUE)", file=sys.stderr)  # fmt: skip
        return 2
    return None


def _guarded(command: str, work: Callable[[], str], argv: list[str] | tuple[str, ...] = ()) -> int:
    """Run a command's `work` and print what it returns (exit 0); bad input gets one line on stderr (exit 2)."""
    from hydra.errors import HydraException

    from . import config

    try:
        message = work()
    except (ValueError, FileNotFoundError, HydraException) as e:
        print(f"llbbench {command}: error: {config.error_line(e, argv)}", file=sys.stderr)
        return 2
    except OSError as e:  # a folder that cannot be written in (a path error: 2), a full disk (1)
        print(f"llbbench {command}: error: cannot write {e.filename or 'its files'}: {e.strerror or e}",
              file=sys.stderr)  # fmt: skip
        return 1 if e.errno in (errno.ENOSPC, errno.EDQUOT) else 2
    print(message)
    return 0


def report(argv: list[str]) -> int:
    """`llbbench report`: parse, build, and say where the report is."""
    from .report import FORMATS

    parser = argparse.ArgumentParser(
        prog="llbbench report",
        description="Write the paper's Tables 1-4 (Markdown, LaTeX, CSV), Figures 5-8 (PNG, PDF) and claims.md "
        "from run directories (found recursively under each DIR).",
    )
    parser.add_argument("dirs", nargs="+", metavar="DIR", help="results folders, e.g. results/table2_cifar10")
    parser.add_argument("--out", help="where to write the report (default: DIR/report of the first DIR)")
    parser.add_argument("--formats", default=",".join(FORMATS), help=f"table formats (default {','.join(FORMATS)})")
    args = parser.parse_args(argv)
    from .report import build_report

    try:
        out = build_report(args.dirs, args.out, [f.strip() for f in args.formats.split(",") if f.strip()])
    except (ValueError, FileNotFoundError) as e:
        print(f"llbbench report: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a folder this user cannot write in, a full disk
        where = e.filename or args.out or Path(args.dirs[0]) / "report"
        print(f"llbbench report: error: cannot write the report in {where} ({e.strerror or e}); name a folder you "
              "can write in with --out DIR", file=sys.stderr)  # fmt: skip
        return 2
    print(f"report written: {out / 'report.md'} (claims: {out / 'claims.md'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
