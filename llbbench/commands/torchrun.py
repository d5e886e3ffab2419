"""`llbbench torchrun`: one run on several processes, as `torchrun ... -m llbbench run`, with one message per problem.

Under plain torchrun every process of a run says each problem (a batch that does not split over the processes
is refused by all of them), then torchrun adds its own report and a `ChildFailedError` traceback. This command
starts the same processes through torch's launcher (every torchrun option works) and:

- leaves the first process of each machine (local rank 0) on the console, as it is;
- writes the messages of the others (their stderr) to a file each, and when the job ends says, once and named by
  rank, each line of theirs that the first process has not already said;
- ends with the processes' own exit status (2 for bad input, 130 when stopped), or says in one line which process
  was killed, in place of torchrun's report and traceback.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import sys
import tempfile
from pathlib import Path

from ..backend import lifetime

ENV = "LLBBENCH_TORCHRUN_STDERR"  # internal: the folder where the processes of `llbbench torchrun` write stderr
FORM = "llbbench torchrun [TORCHRUN OPTIONS] run [OVERRIDES]"
TIME = re.compile(r"^\[\d{4}-\d\d-\d\d [\d:,.]+\]")  # a log record's time, as Hydra's console log writes it
OURS = re.compile(r"^(rank \d+: )?llbbench [\w-]+: ")  # a line by which a command says why it ended


def capture_stderr() -> None:
    """In a process started by `llbbench torchrun`: local rank 0 copies its stdout and stderr to its file (and
    keeps its console); the others write their stderr (where they log: `cli._follow`) to their file only."""
    folder, rank = os.environ.get(ENV), os.environ.get("LOCAL_RANK", "")
    if not folder or not rank.isdigit() or not Path(folder).is_dir():
        return
    path = Path(folder) / f"{rank}.err"
    if rank == "0":
        copy = path.open("a", encoding="utf-8", errors="replace")
        sys.stdout, sys.stderr = _Copy(sys.stdout, copy), _Copy(sys.stderr, copy)
        return
    handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    sys.stderr.flush()
    os.dup2(handle, 2)  # what C++ code and faulthandler write too
    os.close(handle)


class _Copy:
    """A text stream that writes to the console and to a file."""

    def __init__(self, console, copy) -> None:
        self._console, self._copy = console, copy

    def write(self, text: str) -> int:
        self._copy.write(text)
        self._copy.flush()
        return self._console.write(text)

    def flush(self) -> None:
        self._console.flush()

    def __getattr__(self, name: str):
        return getattr(self._console, name)


def main(argv: list[str]) -> int:
    """`llbbench torchrun`: parse torchrun's options, start the run's processes, report their end in one line."""
    from torch.distributed import run as torch_run

    parser = torch_run.get_args_parser()
    parser.prog = "llbbench torchrun"
    parser.usage = FORM
    parser.description = (
        "One run on several processes (DistributedDataParallel): torchrun's options, then `run` and the run's "
        "overrides. Each problem is said once, as by one process, and the exit status is the processes' own."
    )
    args = parser.parse_args(argv)
    if args.module or args.no_python or args.training_script != "run":
        print(f"llbbench torchrun: error: give the run as `{FORM}` (it starts `llbbench run` itself; "
              f"got {args.training_script!r})", file=sys.stderr)  # fmt: skip
        return 2
    args.module, args.training_script, args.training_script_args = True, "llbbench", ["run", *args.training_script_args]
    # torchrun's own report of a failed or stopped process (its logs and the ChildFailedError) is replaced by ours;
    # each of its modules sets its logger's level when imported (all are by now)
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("torch.distributed.elastic"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    with tempfile.TemporaryDirectory(prefix="llbbench-torchrun-") as folder:
        os.environ[ENV] = folder
        try:
            return _launch(torch_run, args, Path(folder))
        finally:
            del os.environ[ENV]


def _launch(torch_run, args, folder: Path) -> int:
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    try:
        torch_run.run(args)
    except ChildFailedError as e:
        said = _say_the_others(folder)
        return _failed(e.failures, said)
    except (SignalException, KeyboardInterrupt) as e:
        said = _say_the_others(folder)
        if not said:
            number = e.sigval if isinstance(e, SignalException) else signal.SIGINT
            print(f"llbbench torchrun: {lifetime.stop_message(number)}", file=sys.stderr)
        return 130
    except Exception as e:  # the rendezvous and the launcher's own checks: nothing was trained
        _say_the_others(folder)
        print(f"llbbench torchrun: error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    _say_the_others(folder)
    return 0


def _lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    return [line.strip() for line in re.split(r"[\r\n]", text) if line.strip()]


def _same(line: str) -> str:
    """A line as compared between processes: without the time of a log record; a command's last line (why it
    ended) also without its numbers (each process was stopped at its own step)."""
    line = TIME.sub("", line)
    return re.sub(r"\d+", "#", line) if OURS.match(line) else line


def _say_the_others(folder: Path) -> bool:
    """Say each line that a process other than local rank 0 wrote and local rank 0 did not; True when a process has
    said why it ended."""
    seen = {_same(line) for line in _lines(folder / "0.err")}
    said = any(OURS.match(line) for line in seen)
    ranks = sorted(int(p.stem) for p in folder.glob("*.err") if p.stem.isdigit() and p.stem != "0")
    for rank in ranks:
        for line in _lines(folder / f"{rank}.err"):
            said = said or bool(OURS.match(line))
            if _same(line) not in seen:
                seen.add(_same(line))
                print(f"rank {rank}: {line}", file=sys.stderr)
    return said


STOPPED_BY_TORCHRUN = (-signal.SIGTERM, 130, 143)  # a process that torchrun stopped when another failed


def _failed(failures: dict, said: bool) -> int:
    """The exit status of a job whose processes failed: that of the process that failed first (2: bad input), not
    of those torchrun stopped then; a process killed by a signal is named, with what the others did."""
    causes = {rank: f for rank, f in failures.items() if f.exitcode not in STOPPED_BY_TORCHRUN} or failures
    rank, first = min(causes.items(), key=lambda item: (item[1].timestamp, item[0]))
    if first.exitcode < 0:
        print(f"llbbench torchrun: error: the process of rank {rank} was killed by {_signal_name(-first.exitcode)}, "
              "and the others were stopped: run the same command to resume from the last checkpoint",
              file=sys.stderr)  # fmt: skip
        return 128 - first.exitcode
    if not said:
        print(f"llbbench torchrun: error: the process of rank {rank} ended with exit status {first.exitcode}",
              file=sys.stderr)  # fmt: skip
    return first.exitcode


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
