"""Where a run stands and what its checkpoint holds: progress, weights, optimizer, random states; saved, restored,
and refused when damaged, unsafe or another run's."""

from __future__ import annotations

import hashlib
import logging
import math
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ..records.run import CHECKPOINT, CheckpointError, RunDir
from .setup import Setup

log = logging.getLogger(__name__)


@dataclass
class Progress:
    """Where a run stands: the epoch in progress and its batches done, totals, and the epoch's accumulators."""

    epoch: int = 1  # the epoch in progress (1-based)
    batch: int = 0  # its mini-batches already trained
    epochs: int = 0  # completed epochs
    steps: int = 0
    seconds: float = 0.0  # training time spent by earlier processes of this run
    epoch_seconds: float = 0.0  # of the epoch in progress, by earlier processes
    loss_sum: torch.Tensor | None = None  # of the epoch in progress, on the device
    correct: torch.Tensor | None = None
    last_epoch: dict[str, float] | None = None
    resumed_at: list[int] = field(default_factory=list)
    plateau: dict[str, Any] | None = None  # the plateau rule's windows so far, when it is on


def checkpoint_state(setup: Setup, progress: Progress, seconds: float, rng: list[dict[str, Any]]) -> dict[str, Any]:
    """What a resumed run needs to continue exactly: weights, optimizer, position, metrics, and the random
    states of every process (`rng`, in rank order)."""
    return {
        "identity": setup.identity,
        "model": setup.model.state_dict(),
        "optimizer": setup.optimizer.state_dict(),
        "scheduler": setup.scheduler.state_dict(),
        "rng": rng,
        "progress": {**asdict(progress), "seconds": seconds, "resumed_at": list(progress.resumed_at)},
    }


def rng_state() -> dict[str, Any]:
    """This process's random states: Python's, NumPy's, torch's, CUDA's, as tensors and plain values only (what
    `torch.load(weights_only=True)` reads back: NumPy's key array travels as an int64 tensor)."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, gauss),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def restore(setup: Setup, checkpoint: dict[str, Any], progress: Progress) -> None:
    setup.model.load_state_dict(checkpoint["model"])
    setup.optimizer.load_state_dict(checkpoint["optimizer"])
    setup.scheduler.load_state_dict(checkpoint["scheduler"])
    states = checkpoint["rng"]  # one per rank (a checkpoint of a one-process run before them: one dict)
    rng = states if isinstance(states, dict) else states[setup.world.rank]
    random.setstate(rng["python"])
    kind, keys, *rest = rng["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    for key, value in checkpoint["progress"].items():
        if isinstance(value, torch.Tensor):
            value = value.to(setup.device)
        setattr(progress, key, value)
    progress.resumed_at.append(progress.steps)


def weights_digest(model: nn.Module) -> str:
    """SHA-256 of the model's state (names and raw bytes): equal digests mean bitwise-equal weights."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class Checkpointer:
    """Writes the run's checkpoint (tagged with its identity): at the end of every epoch, and within an epoch
    every `checkpoint_minutes`. It owns the run's clock: the training seconds of this process and earlier ones."""

    def __init__(self, setup: Setup, record: RunDir, minutes: float) -> None:
        self.setup, self.record = setup, record
        self.every = 60.0 * minutes or math.inf
        self.started = self.saved = time.perf_counter()
        self.saved_step: int | None = None  # the step of the checkpoint on disk
        self.writing = False

    def seconds(self, progress: Progress) -> float:
        """Training seconds so far, earlier processes of the run included."""
        return progress.seconds + time.perf_counter() - self.started

    def due(self) -> bool:
        return time.perf_counter() - self.saved >= self.every

    def save(self, progress: Progress, plateau: dict[str, Any] | None) -> None:
        """Write the checkpoint (every process takes part: rank 0 gathers their random states and writes it)."""
        progress.plateau = plateau  # the plateau rule's state (None when it is off)
        rng = self.setup.world.gather(rng_state())
        if self.record.write:
            state = checkpoint_state(self.setup, progress, self.seconds(progress), rng)
            self.writing = True  # a Ctrl-C from here on may find the new file in place before saved_step says so
            self.record.write_checkpoint(state)
        self.saved, self.saved_step, self.writing = time.perf_counter(), progress.steps, False

    def step_on_disk(self) -> int | None:
        """The step of the checkpoint on disk (None: none yet), also when a write was interrupted."""
        if not self.writing:
            return self.saved_step
        try:
            state = self.record.read_checkpoint()
        except CheckpointError:
            return None
        return None if state is None else int(state["progress"]["steps"])


def resume_point(record: RunDir, run_identity: dict[str, Any], rerun: bool) -> dict[str, Any] | str | None:
    """The run's checkpoint to resume from; None to start from scratch; or why it cannot start (a damaged, unsafe
    or foreign checkpoint without `rerun=true`). With `rerun=true` such a checkpoint is moved aside, never
    deleted, and the run starts from scratch."""
    try:
        checkpoint = record.read_checkpoint()
        if checkpoint is not None and checkpoint["identity"] != run_identity:
            raise CheckpointError(record.path / CHECKPOINT, "belongs to another config", aside="foreign")
    except CheckpointError as e:
        if not rerun:
            return f"{e}; rerun=true moves it aside (to {CHECKPOINT}.{e.aside}) and trains the run from scratch"
        log.warning("%s: moved aside to %s; the run starts from scratch (rerun=true)", e,
                    record.move_aside(CHECKPOINT, e.aside).name)  # fmt: skip
        return None
    return checkpoint
