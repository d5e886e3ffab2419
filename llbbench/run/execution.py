"""One run from start to record: its lock, skip or resume or train, and its summary; a full disk, Ctrl-C and a
failure each leave the run directory in a state the next start goes on from."""

from __future__ import annotations

import errno
import logging
import shutil
import time
import traceback
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from .. import models
from ..backend import distributed, gpus
from ..backend.distributed import SINGLE, World
from ..records import trackers
from ..records.environment import environment, now
from ..records.run import (
    ENV,
    EPOCHS,
    LAYER_LRS,
    STEPS,
    RunDir,
    RunLock,
    blew_up,
    final_status,
    first_line,
    state_bytes,
)
from .checkpoint import Progress, restore, resume_point, weights_digest
from .loop import train
from .setup import Setup, prepare

log = logging.getLogger(__name__)


def execute(cfg: DictConfig, run_dir: str | Path) -> str:
    """Run `cfg` in `run_dir` unless it has already ended there or another process is training it.

    Returns the status: `completed`, `diverged`, `stopped` or `failed` for a run trained now, `skipped` for one
    that had ended already (`rerun=true` trains it again) or is locked by a live process. A run that `failed` has
    not ended: it is trained again from the start. With `device=auto` on a machine with several GPUs (or one GPU
    that `gpus.runs_per_gpu` runs share) the run first claims a GPU slot that no other run holds (`gpus.claim`),
    waiting for one if all are busy. In a run of several
    processes (torchrun, or a Slurm job of several tasks) rank 0 holds the lock and decides for all of them.
    """
    world, device = distributed.start(str(cfg.get("device", "auto")), int(cfg.get("world_size", 1)))
    if world.distributed:  # each process on its own GPU (or the CPU)
        return _execute_distributed(cfg, run_dir, world, device)
    with RunLock(run_dir) as lock:
        if not _may_train(cfg, run_dir, lock):
            return "skipped"
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        per_gpu = int(OmegaConf.select(cfg, "gpus.runs_per_gpu", default=1) or 1)
        if not gpus.should_claim(str(cfg.get("device", "auto")), count, per_gpu):
            return run(cfg, run_dir)["status"]
        with gpus.claim(count, per_gpu=per_gpu) as index:  # a GPU slot no other run holds
            log.info("on GPU %d of %d (%d runs a GPU at most)", index, count, per_gpu)
            return run(cfg, run_dir, device=f"cuda:{index}")["status"]


def _may_train(cfg: DictConfig, run_dir: str | Path, lock: RunLock) -> bool:
    """Take the run's lock and say whether to train it now: not when another process holds the lock, nor when
    the run has ended (unless `rerun=true`). A failed run, or one to rerun, is cleared first."""
    if not lock.acquire():
        log.info("being trained by another process (%s): %s", lock.holder(), run_dir)
        return False
    done = final_status(run_dir)  # read under the lock: a run that another process just ended is seen
    if done is not None and done != "failed" and not cfg.get("rerun", False):
        log.info("already done (%s): %s; rerun=true trains it again", done, run_dir)
        return False
    if done is not None:  # a failed run (its cause may be fixed now), or rerun=true: start over
        log.info("%s: %s", "training again after a failure" if done == "failed" else "rerun=true", run_dir)
        RunDir(run_dir).clear()
    return True


def _execute_distributed(cfg: DictConfig, run_dir: str | Path, world: World, device: str) -> str:
    """`execute` for one process of several: rank 0 takes the lock and decides; the others follow its decision."""
    with RunLock(run_dir) as lock:
        decision = _may_train(cfg, run_dir, lock) if world.main else None
        if not world.from_main(decision):
            return "skipped"
        return run(cfg, run_dir, world, device)["status"]


def run(cfg: DictConfig, run_dir: str | Path, world: World = SINGLE, device: str | None = None) -> dict[str, Any]:
    """Train one run described by `cfg` and record it in `run_dir`; returns the summary. `device`: the one this
    process was given, in place of the config's (not part of the run's identity).

    A checkpoint in `run_dir` is resumed from, to the same result as an uninterrupted run. Bad input raises
    before anything is trained. An error while training is recorded as status `failed` (with the error) and
    returned, so that a sweep can go on. In a run of several processes it is raised instead, as `RankFailed`:
    the other processes cannot go on without this one (and see only a broken connection), so the job stops, the
    last checkpoint stays, and the next start resumes from it. Only rank 0 writes to `run_dir`. A full disk
    raises `NoSpace` (nothing half-written is left, the last checkpoint stays), Ctrl-C `Interrupted`.
    """
    started, began = now(), time.perf_counter()
    setup = prepare(cfg, world, device)
    record = None
    try:
        record = RunDir(run_dir, write=world.main)
        progress = _start(setup, record)
        if world.main and setup.recorded.get("logger"):
            record.trackers = trackers.start(setup.recorded["logger"], _run_info(setup, record), progress.steps)
        setup_seconds = time.perf_counter() - began  # the start-up: checks, data, network, checkpoint
        summary = _summary(setup, progress, *_train_or_fail(setup, record, progress))
        summary.update(started=started, setup_seconds=round(setup_seconds, 3), ended=now())
        record.write_summary(summary)
    except OSError as e:
        if e.errno not in NO_SPACE:
            raise
        raise NoSpace(
            no_space_message(Path(run_dir), state_bytes([setup.model.state_dict(), setup.optimizer.state_dict()]))
        ) from None
    finally:
        if record is not None and record.trackers is not None:
            record.trackers.close()
    if not setup.config.keep_checkpoint:
        record.remove_checkpoint()
    return summary


def _run_info(setup: Setup, record: RunDir) -> trackers.RunInfo:
    values = setup.recorded
    return trackers.RunInfo(run_id=record.path.name, run_dir=record.path, results_dir=Path(values["results_dir"]),
                            experiment=values["experiment_name"], config=values)  # fmt: skip


class NoSpace(RuntimeError):
    """The run's folder is on a full device (or over its quota): the run stops where its last checkpoint is."""


class RankFailed(RuntimeError):
    """One process of a run of several failed while training (or lost another): every process stops, the last
    checkpoint stays, and the next start resumes from it."""


NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def no_space_message(folder: Path, needed: int) -> str:
    free = shutil.disk_usage(folder if folder.exists() else folder.parent).free
    return (f"no space left for {folder} ({free / 2**20:.1f} MB free; a checkpoint of this run needs "
            f"{needed / 2**20:.1f} MB, written beside the previous one): free some space and run the same command "
            "to resume from the last checkpoint, which is intact")  # fmt: skip


def _start(setup: Setup, record: RunDir) -> Progress:
    """Where the run starts: resumed from its checkpoint, or from scratch (its directory cleared, its config and
    environment written)."""
    world = setup.world
    progress = Progress()
    rerun = setup.config.rerun
    checkpoint = world.from_main(resume_point(record, setup.identity, rerun) if world.main else None)
    if isinstance(checkpoint, str):  # rank 0 refused it
        raise ValueError(checkpoint)
    if checkpoint is not None:
        restore(setup, checkpoint, progress)
        record.truncate_rows(STEPS, "step", progress.steps)
        record.truncate_rows(LAYER_LRS, "step", progress.steps)
        record.truncate_rows(EPOCHS, "epoch", progress.epochs)
        log.info("resuming from step %d (epoch %d, batch %d)", progress.steps, progress.epoch, progress.batch)
    else:
        record.clear()
        record.write_config(setup.recorded)
        code = setup.identity.get("optimizer_code")  # an optimizer from outside llbbench: what its code was
        record.write_json(ENV, {**environment(setup.device), **({"optimizer_code": code} if code else {})})
    return progress


def _train_or_fail(setup: Setup, record: RunDir, progress: Progress) -> tuple[str, dict[str, str] | None, str | None]:
    """Train; the final status, the error when it failed (one line on the console, its traceback in the run's
    log and summary), and why when it diverged: a non-finite loss, or a final training loss that is finite but far
    above chance (it blew up)."""
    world = setup.world
    try:
        status = train(setup, record, progress)
    except Exception as e:
        if isinstance(e, OSError) and e.errno in NO_SPACE:
            raise
        if world.distributed:
            log_to_files(f"the failure's traceback:\n{traceback.format_exc()}")
            raise RankFailed(
                f"rank {world.rank} of {world.size}: {type(e).__name__}: {first_line(e)}; the run's processes stop, "
                "and the next start resumes from its last checkpoint"
            ) from e
        trace = traceback.format_exc()
        log.error("run failed: %s: %s", type(e).__name__, first_line(e))
        log_to_files(f"the failure's traceback:\n{trace}")
        return "failed", {"type": type(e).__name__, "message": str(e), "traceback": trace}, None
    if status == "diverged":
        return status, None, "the loss became non-finite"
    why = blew_up(progress.last_epoch["train_loss"], setup.data.num_classes) if progress.last_epoch else None
    if why is not None:  # completed or stopped, with a finite loss far above chance
        log.warning("%s: the run is recorded as diverged", why)
        return "diverged", None, why
    return status, None, None


def log_to_files(message: str) -> None:
    """`message` to the log files only (the run's log under Hydra), not to the console: a traceback that the
    console has summed up in one line."""
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, "%s", (message,), None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def _summary(
    setup: Setup, progress: Progress, status: str, error: dict[str, str] | None, why: str | None
) -> dict[str, Any]:
    summary = {
        "status": status,
        "scale": setup.config.scale,
        "epochs": progress.epochs,
        "steps": progress.steps,
        "seconds": round(progress.seconds, 3),
        "num_params": models.num_parameters(setup.model),
        "num_classes": setup.data.num_classes,
        "final": progress.last_epoch,
        "model_sha256": weights_digest(setup.model),
        "resumed_at_steps": progress.resumed_at,
    }
    record = getattr(setup.optimizer, "record", None)  # what an optimizer reports of itself (Path-SGD: κ's range)
    if callable(record):
        summary["optimizer_record"] = record()
    if error:
        summary["error"] = error
    if status == "diverged":
        summary["diverged_at_step"] = progress.steps
        summary["diverged_why"] = why
    return summary
