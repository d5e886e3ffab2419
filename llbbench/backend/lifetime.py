"""A process of llbbench's ends with the command that started it.

A sweep's runs live in other processes than the command that launched them: joblib's (loky's) workers for
`hydra/launcher=joblib|cores`, the `llbbench run -m` sweeps that `llbbench tune` starts. Stopping the command must
stop them too, however it is stopped:

- SIGTERM to a command is taken as Ctrl-C (`stop_on_terminate`): the command unwinds as it does on SIGINT, which
  ends its runs (each keeps its last checkpoint and resumes from it) and shuts its workers down.
- A command killed outright (SIGKILL) cannot tell anyone. Every process it started watches it instead
  (`watch_parent`): the command names itself in the environment its children inherit (`adopt_children`), and a
  child whose parent has gone ends within `POLL_SECONDS`, as if killed, leaving its run directory as a SIGKILL
  would: the last checkpoint and the rows up to it, from which the next start resumes exactly.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from types import FrameType

ENV = "LLBBENCH_PARENT_PID"  # internal: the llbbench process that started this one
POLL_SECONDS = 0.5
_watching = False


def adopt_children() -> None:
    """Name this process in the environment, so that the llbbench processes it starts watch it."""
    os.environ[ENV] = str(os.getpid())


def watch_parent() -> None:
    """In a process an llbbench command started (directly: its parent is the process `ENV` names), end this
    process as soon as that parent is gone. Once per process; elsewhere (the command itself, a Slurm job on
    another machine) nothing."""
    global _watching
    named = os.environ.get(ENV, "")
    if _watching or not named.isdigit() or int(named) == os.getpid() or os.getppid() != int(named):
        return
    _watching = True
    parent = int(named)
    threading.Thread(target=_watch, args=(parent,), name="llbbench-parent-watch", daemon=True).start()


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(POLL_SECONDS)
    # the parent has gone: its command is stopped. End now, as a SIGKILL would (every write of a run is atomic or
    # cut back on resume), so that nothing of the sweep goes on training or writing.
    os._exit(143)


def stop_on_terminate() -> None:
    """SIGTERM (a `kill`, a scheduler's stop) unwinds the command as Ctrl-C does: a KeyboardInterrupt."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _as_interrupt)


def _as_interrupt(signum: int, frame: FrameType | None) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
    raise _stop(signum)


def stop_message(signum: int) -> str:
    """What a command stopped by signal `signum` says (after `llbbench COMMAND: `)."""
    return f"stopped by signal {signal.Signals(signum).name}: run the same command to go on"


def _stop(signum: int) -> KeyboardInterrupt:
    if signum == signal.SIGINT:
        return KeyboardInterrupt()  # Ctrl-C: the command says it was interrupted
    return KeyboardInterrupt(stop_message(signum))


@contextlib.contextmanager
def stops_held() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM back while the block runs, then stop (KeyboardInterrupt) if one came.

    For imports of compiled libraries that catch any error of what they import: torch's C init imports numpy
    and takes a failure there as "no numpy", so a KeyboardInterrupt raised inside it was lost and the command
    ran on to its end (the soak found it), or failed later with "cannot load module more than once". A second
    signal while held ends the process at once, as a second SIGTERM does."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    came: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        if came:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
        came.append(signum)

    previous = {number: signal.signal(number, hold) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    if came:
        if came[0] == signal.SIGTERM:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)  # as _as_interrupt: a second SIGTERM ends it at once
        raise _stop(came[0])
