"""One run per GPU: on a machine with several GPUs, each run of a sweep claims one GPU no other run holds.

A sweep launched with G parallel jobs (`hydra/launcher=joblib hydra.launcher.n_jobs=G`, or `submitit_local`) on a
machine with G GPUs then keeps every GPU busy with exactly one run. A claim is an exclusive `flock` on one lock
file per GPU in a folder all runs of the machine share (`$LLBBENCH_GPU_LOCKS`, else a folder in the system's
temporary directory); the operating system drops it when the run's process ends, however it ends.
"""

from __future__ import annotations

import fcntl
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)
WAIT_SECONDS = 2.0  # between tries when every GPU is held


def lock_folder() -> Path:
    """Where the per-GPU lock files live: `$LLBBENCH_GPU_LOCKS`, else `<tmp>/llbbench-gpus-<user id>`."""
    folder = os.environ.get("LLBBENCH_GPU_LOCKS") or Path(tempfile.gettempdir()) / f"llbbench-gpus-{os.getuid()}"
    return Path(folder)


@contextmanager
def claim(count: int, folder: Path | None = None, wait: float = WAIT_SECONDS) -> Iterator[int]:
    """Hold one of GPUs 0..count-1 that no other process holds, for the `with` block; wait while all are held."""
    if count < 1:
        raise ValueError(f"claim needs at least one GPU, got {count}")
    folder = folder or lock_folder()
    folder.mkdir(parents=True, exist_ok=True)
    announced = False
    while True:
        for index in range(count):
            handle = open(folder / f"gpu{index}.lock", "a+")  # noqa: SIM115 - held open for the whole claim
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            try:
                handle.seek(0)
                handle.truncate()
                handle.write(f"{os.getpid()}\n")
                handle.flush()
                yield index
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
                handle.close()
            return
        if not announced:
            log.info("all %d GPUs are held by other runs; waiting for one (locks in %s)", count, folder)
            announced = True
        time.sleep(wait)


def should_claim(device: str, count: int) -> bool:
    """Whether a run asking for `device` claims a GPU: `auto` on a machine with several (`cuda:N` is taken as
    asked, and one GPU needs no claim)."""
    return device == "auto" and count > 1
