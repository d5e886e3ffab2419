"""Runs per GPU: on a machine with GPUs, each run of a sweep claims one of a GPU's `per_gpu` slots that no other run
holds (`gpus.runs_per_gpu`, default 1: a GPU to itself).

A sweep launched with G·k parallel jobs (`hydra/launcher=joblib hydra.launcher.n_jobs=G·k`, or `submitit_local`)
on a machine with G GPUs then keeps every GPU busy with exactly k runs: small runs that cannot fill a GPU alone
share it. Slots are taken GPU by GPU (every GPU's first slot before any second one), so fewer runs than slots
spread over the GPUs. A claim is an exclusive `flock` on one lock file per slot in a folder all runs of the machine
share (`$LLBBENCH_GPU_LOCKS`, else a folder in the system's temporary directory); the operating system drops it
when the run's process ends, however it ends.
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


def slot_file(index: int, slot: int) -> str:
    """The lock file of slot `slot` of GPU `index` (slot 0: the file one run per GPU has always used)."""
    return f"gpu{index}.lock" if slot == 0 else f"gpu{index}.slot{slot}.lock"


@contextmanager
def claim(count: int, folder: Path | None = None, wait: float = WAIT_SECONDS, per_gpu: int = 1) -> Iterator[int]:
    """Hold one of the `per_gpu` slots of one of GPUs 0..count-1 that no other process holds, for the `with` block
    (its GPU's index); wait while all are held."""
    if count < 1:
        raise ValueError(f"claim needs at least one GPU, got {count}")
    if per_gpu < 1:
        raise ValueError(f"gpus.runs_per_gpu={per_gpu} must be at least 1")
    folder = folder or lock_folder()
    folder.mkdir(parents=True, exist_ok=True)
    announced = False
    while True:
        for slot, index in ((s, i) for s in range(per_gpu) for i in range(count)):
            handle = open(folder / slot_file(index, slot), "a+")  # noqa: SIM115 - held open for the whole claim
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
            log.info("all %d slots of the %d GPUs are held by other runs; waiting for one (locks in %s)",
                     count * per_gpu, count, folder)  # fmt: skip
            announced = True
        time.sleep(wait)


def should_claim(device: str, count: int, per_gpu: int = 1) -> bool:
    """Whether a run asking for `device` claims a GPU slot: `auto` on a machine with several GPUs, or with one GPU
    that several runs share (`cuda:N` is taken as asked; one GPU to one run needs no claim)."""
    return device == "auto" and (count > 1 or (count == 1 and per_gpu > 1))
