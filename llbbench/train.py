"""One run: build data, network and optimizer from the config, train, evaluate every epoch, record."""

from __future__ import annotations

import errno
import hashlib
import logging
import math
import random
import shutil
import time
import traceback
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import nn
from tqdm.auto import tqdm

from . import config, distributed, gpus, models, optim, precision
from . import data as datasets
from .distributed import SINGLE, World
from .runs import (
    CHECKPOINT,
    CheckpointError,
    RunDir,
    RunLock,
    blew_up,
    environment,
    final_status,
    first_line,
    identity,
    state_bytes,
)
from .schedules import build_scheduler

log = logging.getLogger(__name__)


@dataclass
class Setup:
    """Everything a run trains with, built from its config."""

    data: datasets.Data
    model: nn.Module
    optimizer: torch.optim.Optimizer
    spec: optim.OptimizerSpec
    device: torch.device
    scheduler: torch.optim.lr_scheduler.LRScheduler  # `train.schedule`, stepped after every optimizer step
    precision: str = "fp32"  # `train.precision`, resolved (llbbench/precision.py)
    channels_last: bool = False  # `train.channels_last`, resolved
    world: World = SINGLE  # the processes training this run (llbbench/distributed.py)
    replica: nn.Module | None = None  # in a run of several processes, `model` inside DistributedDataParallel
    sync_bn: bool = False  # `train.sync_bn`, resolved
    val_part: datasets.Split | None = None  # this process's share of the validation and test splits (all of
    test_part: datasets.Split | None = None  # them in one process), evaluated by it and summed over processes

    @property
    def network(self) -> nn.Module:
        """What the training steps run: the replica that synchronises gradients, or the model itself."""
        return self.replica if self.replica is not None else self.model


def resolve_device(name: str) -> torch.device:
    """`auto` is CUDA when present, else the CPU; anything else must name a usable torch device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"device={name!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name!r} asked for, but CUDA is not available here; use auto or cpu")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _options(node: DictConfig) -> tuple[str, dict[str, Any]]:
    """A config group's `name` and its remaining values as plain Python."""
    values = OmegaConf.to_container(node, resolve=True)
    return values.pop("name"), values


def prepare(cfg: DictConfig, world: World = SINGLE) -> Setup:
    """Build data, network and optimizer; bad input raises `ValueError`/`FileNotFoundError` with its reason.

    The config is checked (`config.check`: keys, types, ranges, names) before any data is loaded. In a run of
    several processes (`world`) every process builds the same, and the network is wrapped in
    DistributedDataParallel, which starts every replica from rank 0's weights."""
    typed = config.check(cfg)
    device = resolve_device(typed.device)
    seed_everything(distributed.rank_seed(typed.run_seed, world.rank))
    options = OmegaConf.to_container(typed.dataset, enum_to_str=True)
    data = datasets.build(options, device=device, fold=typed.fold, folds=typed.cv.folds, cv_seed=typed.cv.seed)
    datasets.check_fingerprint(options)
    per_epoch = data.train.num_batches(typed.train.batch_size, typed.train.drop_last)
    if per_epoch == 0:
        raise ValueError(
            f"train.batch_size={typed.train.batch_size} with train.drop_last=true leaves no mini-batch of the "
            f"{len(data.train)} training images; use a batch size of at most {len(data.train)}"
        )
    distributed.check_batch(typed.train.batch_size, len(data.train), typed.train.drop_last, world)
    model_name, model_opts = _options(typed.model)
    model = models.build(model_name, data.num_classes, data.input_shape, **model_opts)
    init_name, init_opts = _options(typed.init)
    models.initialize(model, init_name, **init_opts)
    numeric = precision.resolve(typed.train.precision.name, device)
    channels_last = precision.resolve_channels_last(typed.train.channels_last, device)
    precision.check_layout(channels_last, device)
    precision.configure(numeric, device)
    distributed.check_sync_bn(typed.train.sync_bn, device)
    sync_bn = distributed.resolve_sync_bn(typed.train.sync_bn, device, world.size)
    if sync_bn:  # the same parameters in SyncBatchNorm modules: layer groups and κ see them as BatchNorm
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    replica = _replica(model, device) if world.distributed else None
    opt_name, opt_opts = _options(typed.optimizer)
    optimizer = optim.build(opt_name, model, input_shape=data.input_shape, **opt_opts)
    t = typed.train
    scheduler = build_scheduler(optimizer, t.schedule.name, t.schedule_k, per_epoch, t.epochs * per_epoch)
    val_part, test_part = (_part(split, world) for split in (data.val, data.test))
    return Setup(data, model, optimizer, optim.get(opt_name), device, scheduler, numeric, channels_last, world,
                 replica, sync_bn, val_part, test_part)  # fmt: skip


def _replica(model: nn.Module, device: torch.device) -> nn.Module:
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def _part(split: datasets.Split | None, world: World) -> datasets.Split | None:
    """`world.rank`'s contiguous share of an evaluation split (the split itself in one process)."""
    if split is None or not world.distributed:
        return split
    return split.take(distributed.shard_indices(len(split), world))


def execute(cfg: DictConfig, run_dir: str | Path) -> str:
    """Run `cfg` in `run_dir` unless it has already ended there or another process is training it.

    Returns the status: `completed`, `diverged`, `stopped` or `failed` for a run trained now, `skipped` for one
    that had ended already (`rerun=true` trains it again) or is locked by a live process. A run that `failed` has
    not ended: it is trained again from the start. With `device=auto` on a machine with several GPUs the run first
    claims one that no other run holds (`gpus.claim`), waiting for one if all are busy. In a run of several
    processes (torchrun, or a Slurm job of several tasks) rank 0 holds the lock and decides for all of them.
    """
    world, device = distributed.start(str(cfg.get("device", "auto")), int(cfg.get("world_size", 1)))
    if world.distributed:
        cfg.device = device  # each process's own GPU (or the CPU); not part of the run's identity
        return _execute_distributed(cfg, run_dir, world)
    with RunLock(run_dir) as lock:
        if not _may_train(cfg, run_dir, lock):
            return "skipped"
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if not gpus.should_claim(str(cfg.get("device", "auto")), count):
            return run(cfg, run_dir)["status"]
        with gpus.claim(count) as index:  # several GPUs: this run takes one no other run holds
            cfg.device = f"cuda:{index}"  # not part of the run's identity
            log.info("on GPU %d of %d", index, count)
            return run(cfg, run_dir)["status"]


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


def _execute_distributed(cfg: DictConfig, run_dir: str | Path, world: World) -> str:
    """`execute` for one process of several: rank 0 takes the lock and decides; the others follow its decision."""
    with RunLock(run_dir) as lock:
        decision = _may_train(cfg, run_dir, lock) if world.main else None
        if not world.from_main(decision):
            return "skipped"
        return run(cfg, run_dir, world)["status"]


def run(cfg: DictConfig, run_dir: str | Path, world: World = SINGLE) -> dict[str, Any]:
    """Train one run described by `cfg` and record it in `run_dir`; returns the summary.

    A checkpoint in `run_dir` is resumed from, to the same result as an uninterrupted run. Bad input raises
    before anything is trained. An error while training is recorded as status `failed` (with the error) and
    returned, so that a sweep can go on. In a run of several processes it is raised instead, as `RuntimeError`:
    the other processes cannot go on without this one (and see only a broken connection), so the job stops, the
    last checkpoint stays, and the next start resumes from it. Only rank 0 writes to `run_dir`. A full disk
    raises `NoSpace` (nothing half-written is left, the last checkpoint stays), Ctrl-C `Interrupted`.
    """
    setup = prepare(cfg, world)
    try:
        record = RunDir(run_dir, write=world.main)
        progress, run_identity = _start(setup, cfg, record)
        summary = _summary(setup, cfg, progress, *_train_or_fail(setup, cfg, record, progress, run_identity))
        record.write_json("summary.json", summary)
    except OSError as e:
        if e.errno not in NO_SPACE:
            raise
        raise NoSpace(
            no_space_message(Path(run_dir), state_bytes([setup.model.state_dict(), setup.optimizer.state_dict()]))
        ) from None
    if not cfg.get("keep_checkpoint", False):
        record.remove_checkpoint()
    return summary


class NoSpace(RuntimeError):
    """The run's folder is on a full device (or over its quota): the run stops where its last checkpoint is."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during training; the message says where the run stopped and what its checkpoint holds."""


NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def no_space_message(folder: Path, needed: int) -> str:
    free = shutil.disk_usage(folder if folder.exists() else folder.parent).free
    return (f"no space left for {folder} ({free / 2**20:.1f} MB free; a checkpoint of this run needs "
            f"{needed / 2**20:.1f} MB, written beside the previous one): free some space and run the same command "
            "to resume from the last checkpoint, which is intact")  # fmt: skip


def _start(setup: Setup, cfg: DictConfig, record: RunDir) -> tuple[Progress, dict[str, Any]]:
    """Where the run starts: resumed from its checkpoint, or from scratch (its directory cleared, its config and
    environment written); its progress and identity."""
    world = setup.world
    run_identity = identity(OmegaConf.to_container(cfg, resolve=True))
    progress = Progress()
    checkpoint = world.from_main(resume_point(record, run_identity, cfg.get("rerun", False)) if world.main else None)
    if isinstance(checkpoint, str):  # rank 0 refused it
        raise ValueError(checkpoint)
    if checkpoint is not None:
        restore(setup, checkpoint, progress)
        record.truncate_rows("steps.csv", "step", progress.steps)
        record.truncate_rows("layer_lrs.csv", "step", progress.steps)
        record.truncate_rows("epochs.csv", "epoch", progress.epochs)
        log.info("resuming from step %d (epoch %d, batch %d)", progress.steps, progress.epoch, progress.batch)
    else:
        record.clear()
        cfg.train.precision, cfg.train.channels_last = setup.precision, setup.channels_last  # as resolved here
        cfg.train.sync_bn = setup.sync_bn
        record.write_text("config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
        record.write_json("env.json", environment(setup.device))
    return progress, run_identity


def _train_or_fail(
    setup: Setup, cfg: DictConfig, record: RunDir, progress: Progress, run_identity: dict[str, Any]
) -> tuple[str, dict[str, str] | None, str | None]:
    """Train; the final status, the error when it failed (one line on the console, its traceback in the run's
    log and summary), and why when it diverged: a non-finite loss, or a final training loss that is finite but far
    above chance (it blew up)."""
    world = setup.world
    try:
        status = train(setup, cfg, record, progress, run_identity)
    except Exception as e:
        if isinstance(e, OSError) and e.errno in NO_SPACE:
            raise
        if world.distributed:
            raise RuntimeError(
                f"rank {world.rank} of {world.size}: {type(e).__name__}: {e}; the run's processes stop, and the next "
                "start resumes from its last checkpoint"
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
    setup: Setup, cfg: DictConfig, progress: Progress, status: str, error: dict[str, str] | None, why: str | None
) -> dict[str, Any]:
    summary = {
        "status": status,
        "scale": cfg.get("scale"),
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


def checkpoint_state(
    setup: Setup, run_identity: dict[str, Any], progress: Progress, seconds: float, rng: list[dict[str, Any]]
) -> dict[str, Any]:
    """What a resumed run needs to continue exactly: weights, optimizer, position, metrics, and the random
    states of every process (`rng`, in rank order)."""
    return {
        "identity": run_identity,
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


class Plateau:
    """The paper's stop rule: the loss fell by no more than `min_drop` over `window` iterations.

    Compares the mean mini-batch loss of each window of `window` steps with that of the window before (one host
    sync per window). Its state travels in checkpoints, so a resumed run stops where an uninterrupted one would.
    """

    def __init__(self, window: int, min_drop: float, device: torch.device) -> None:
        if window < 1:
            raise ValueError(f"train.plateau.window={window} must be at least 1")
        self.window, self.min_drop = window, min_drop
        self.total = torch.zeros((), dtype=torch.float64, device=device)
        self.count = 0
        self.previous: float | None = None

    def state(self) -> dict[str, Any]:
        return {"total": self.total.clone(), "count": self.count, "previous": self.previous}

    def load(self, state: dict[str, Any]) -> None:
        self.total = state["total"].to(self.total.device)
        self.count, self.previous = state["count"], state["previous"]

    def reached(self, loss: torch.Tensor) -> bool:
        self.total += loss
        self.count += 1
        if self.count < self.window:
            return False
        mean, self.total, self.count = self.total.item() / self.window, self.total.zero_(), 0
        previous, self.previous = self.previous, mean
        return previous is not None and previous - mean <= self.min_drop


class Checkpointer:
    """Writes the run's checkpoint (tagged with its identity): at the end of every epoch, and within an epoch
    every `checkpoint_minutes`. It owns the run's clock: the training seconds of this process and earlier ones."""

    def __init__(self, setup: Setup, record: RunDir, run_identity: dict[str, Any], minutes: float) -> None:
        self.setup, self.record, self.run_identity = setup, record, run_identity
        self.every = 60.0 * minutes or math.inf
        self.started = self.saved = time.perf_counter()
        self.saved_step: int | None = None  # the step of the checkpoint on disk
        self.writing = False

    def seconds(self, progress: Progress) -> float:
        """Training seconds so far, earlier processes of the run included."""
        return progress.seconds + time.perf_counter() - self.started

    def due(self) -> bool:
        return time.perf_counter() - self.saved >= self.every

    def save(self, progress: Progress, plateau: Plateau | None) -> None:
        """Write the checkpoint (every process takes part: rank 0 gathers their random states and writes it)."""
        progress.plateau = plateau.state() if plateau is not None else None
        rng = self.setup.world.gather(rng_state())
        if self.record.write:
            state = checkpoint_state(self.setup, self.run_identity, progress, self.seconds(progress), rng)
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


def train(setup: Setup, cfg: DictConfig, record: RunDir, progress: Progress, run_identity: dict[str, Any]) -> str:
    """The training loop, from wherever `progress` stands; returns the final status.

    `completed` when the epoch budget is spent, `diverged` when the training loss, or the validation or test
    loss after an epoch, is non-finite, `stopped` when the plateau rule (`train.plateau`) is met.
    """
    t = cfg.train
    plateau = Plateau(**t.plateau, device=setup.device) if t.get("plateau") else None
    if plateau is not None and progress.plateau is not None:
        plateau.load(progress.plateau)
    per_epoch = setup.data.train.num_batches(t.batch_size, t.drop_last)
    quiet = None if setup.world.main else True  # one bar per run: rank 0's
    bar = tqdm(total=t.epochs * per_epoch, initial=progress.steps, unit="step", disable=quiet, desc="train")
    checkpointer = Checkpointer(setup, record, run_identity, cfg.get("checkpoint_minutes", 0))
    checkpointer.saved_step = progress.steps if progress.resumed_at else None
    loop = _Loop(setup, cfg, record, progress, checkpointer, plateau, bar, per_epoch)
    try:
        for epoch in range(progress.epoch, t.epochs + 1):
            status = loop.train_epoch(epoch) or loop.end_epoch(epoch)
            if status is not None:
                return status
    except KeyboardInterrupt:
        on_disk = checkpointer.step_on_disk()
        kept = f"its checkpoint of step {on_disk} is kept" if on_disk is not None else "no checkpoint was written yet"
        raise Interrupted(f"interrupted at step {progress.steps} (epoch {progress.epoch}); {kept} in {record.path}: "
                          "run the same command to go on from there") from None  # fmt: skip
    finally:
        bar.close()
        progress.seconds = checkpointer.seconds(progress)
    return "completed"


@dataclass
class _Loop:
    """What the loop's two steps share: the run's parts, where it stands, and its stop rule and progress bar."""

    setup: Setup
    cfg: DictConfig
    record: RunDir
    progress: Progress
    checkpointer: Checkpointer
    plateau: Plateau | None
    bar: tqdm
    per_epoch: int

    def train_epoch(self, epoch: int) -> str | None:
        """The step loop of `epoch`, from the batch `progress` stands at; a final status if the run ends in it."""
        setup, progress, t = self.setup, self.progress, self.cfg.train
        optimizer, spec, data, world = setup.optimizer, setup.spec, setup.data, setup.world
        progress.epoch = epoch
        if progress.batch == 0:
            progress.loss_sum = torch.zeros((), device=setup.device)
            progress.correct = torch.zeros((), dtype=torch.long, device=setup.device)
            progress.epoch_seconds = 0.0
        setup.network.train()
        epoch_start = time.perf_counter()
        order = datasets.epoch_order(len(data.train), self.cfg.run_seed, epoch)
        order = distributed.shard_order(order, t.batch_size, world, t.drop_last)  # this process's part of each batch
        try:
            for images, labels in data.train.batches(t.batch_size // world.size, order, t.drop_last,
                                                     skip=progress.batch):  # fmt: skip
                count = min(t.batch_size, len(data.train) - progress.batch * t.batch_size)  # the global batch
                if setup.channels_last:
                    images = images.contiguous(memory_format=torch.channels_last)
                # ESGD's estimating step runs without DDP's gradient averaging: ESGD averages its gradients and Hv
                own = world.distributed and spec.needs_create_graph and optimizer.should_create_graph()
                with setup.replica.no_sync() if own else nullcontext():
                    with precision.autocast(setup.precision, setup.device):  # the optimizer steps outside it
                        output = setup.network(images)
                        loss, total = _loss(output, labels, count, world)
                    optimizer.zero_grad(set_to_none=True)
                    try:
                        optim.backward_and_step(spec, optimizer, loss)
                    except optim.NonFiniteLoss:  # an optimizer that reads the loss saw it blow up
                        return _diverged(progress.steps + 1)
                progress.steps += 1
                progress.batch += 1
                self.bar.update()
                step_loss = self._add_to_epoch(loss, total, output, labels, count)
                logged = progress.steps % t.log_every == 0
                if logged:
                    value = step_loss.item()
                    seconds = self.checkpointer.seconds(progress)
                    _log_step(self.record, optimizer, spec, progress.steps, epoch, value, seconds)
                    self.bar.set_postfix(epoch=epoch, loss=f"{value:.4f}", refresh=False)
                    if not math.isfinite(progress.loss_sum.item()):
                        return _diverged(progress.steps)
                setup.scheduler.step()  # after logging: steps.csv shows the rate this step used
                if self.plateau is not None and self.plateau.reached(step_loss):
                    log.info("plateau: the loss fell by at most %s over %d steps", self.plateau.min_drop,
                             self.plateau.window)  # fmt: skip
                    return "stopped"
                if self._checkpoint_due(logged) and progress.batch < self.per_epoch:
                    progress.epoch_seconds += time.perf_counter() - epoch_start
                    epoch_start = time.perf_counter()
                    self.checkpointer.save(progress, self.plateau)
        finally:
            progress.epoch_seconds += time.perf_counter() - epoch_start
        return None

    def _add_to_epoch(
        self, loss: torch.Tensor, total: torch.Tensor | None, output: torch.Tensor, labels: torch.Tensor, count: int
    ) -> torch.Tensor:
        """Add a step to the epoch's loss sum and correct count (over every process); the mean loss of its global
        batch (detached)."""
        progress, world = self.progress, self.setup.world
        correct = (output.argmax(1) == labels).sum()
        if not world.distributed:
            progress.loss_sum += loss.detach() * len(labels)
            progress.correct += correct
            return loss.detach()
        sums = world.all_sum(torch.stack([total.detach().double(), correct.double()]))
        progress.loss_sum += sums[0]
        progress.correct += sums[1].long()
        return sums[0] / count

    def _checkpoint_due(self, logged: bool) -> bool:
        """Whether to checkpoint within the epoch now: `checkpoint_minutes` have passed (in a run of several
        processes, as rank 0's clock says at a logged step, so that all of them checkpoint together)."""
        world = self.setup.world
        if not world.distributed:
            return self.checkpointer.due()
        return logged and world.from_main(self.checkpointer.due())

    def end_epoch(self, epoch: int) -> str | None:
        """After `epoch`'s steps: its training metrics, evaluation, its row of epochs.csv and a checkpoint;
        `diverged` when a loss is non-finite."""
        progress, data, t = self.progress, self.setup.data, self.cfg.train
        seen = len(data.train) if not t.drop_last else self.per_epoch * t.batch_size
        train_loss = progress.loss_sum.item() / seen
        if not math.isfinite(train_loss):
            return _diverged(progress.steps)
        eval_start = time.perf_counter()
        evaluated = epoch % t.eval_every == 0 or epoch == t.epochs or self.plateau is not None
        if evaluated:
            setup = self.setup
            setup.world.sync_buffers(setup.model)  # rank 0's BatchNorm statistics, which its checkpoint holds
            val_loss, val_acc = evaluate(setup.model, setup.val_part, t.eval_batch_size, setup.precision, setup.world)
            test_loss, test_acc = evaluate(setup.model, setup.test_part, t.eval_batch_size, setup.precision,
                                           setup.world)  # fmt: skip
        else:  # `train.eval_every`: not this epoch (NaN in epochs.csv)
            val_loss = val_acc = test_loss = test_acc = math.nan
        row = {
            "epoch": epoch,
            "step": progress.steps,
            "train_loss": train_loss,
            "train_acc": progress.correct.item() / seen,
            "val_loss": val_loss,
            "val_acc": val_acc,
            "test_loss": test_loss,
            "test_acc": test_acc,
            "seconds": round(progress.epoch_seconds, 3),
            "eval_seconds": round(time.perf_counter() - eval_start, 3),
        }
        self.record.append_row("epochs.csv", row)
        progress.epochs, progress.last_epoch = epoch, row
        progress.epoch, progress.batch = epoch + 1, 0
        if evaluated and (not math.isfinite(test_loss) or (data.val is not None and not math.isfinite(val_loss))):
            return _diverged(progress.steps)  # the weights blew up in the epoch's last steps
        self.checkpointer.save(progress, self.plateau)
        scores = f", val loss {val_loss:.4f}, test loss {test_loss:.4f} acc {test_acc:.3f}" if evaluated else ""
        if self.setup.world.main:
            self.bar.write(f"epoch {epoch}/{t.epochs}: train loss {train_loss:.4f} acc {row['train_acc']:.3f}{scores}")
        return None


def _loss(
    output: torch.Tensor, labels: torch.Tensor, count: int, world: World
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The loss to differentiate, and (several processes) this process's summed loss. One process: the mean
    cross-entropy of its batch. Several: its summed cross-entropy times processes / `count` (the global batch),
    so that DDP's average of the gradients over processes is the gradient of the global batch's mean loss, and
    the average of this loss over processes (what LLb-SGD reads) is that mean loss, also when the parts differ."""
    if not world.distributed:
        return F.cross_entropy(output, labels), None
    total = F.cross_entropy(output, labels, reduction="sum")
    return total * (world.size / count), total


def _log_step(
    record: RunDir,
    optimizer: torch.optim.Optimizer,
    spec: optim.OptimizerSpec,
    step: int,
    epoch: int,
    loss: float,
    seconds: float,
) -> None:
    rates = optim.current_lrs(optimizer)
    values = list(rates.values())
    record.append_row(
        "steps.csv",
        {
            "step": step,
            "epoch": epoch,
            "loss": loss,
            "lr": sum(values) / len(values),
            "lr_min": min(values),
            "lr_max": max(values),
            "seconds": round(seconds, 3),
        },
    )
    if spec.layerwise:
        record.append_row("layer_lrs.csv", {"step": step, **rates})


def _diverged(step: int) -> str:
    log.warning("the training loss became non-finite by step %d: the run stops and is recorded as diverged", step)
    return "diverged"


@torch.no_grad()
def evaluate(
    model: nn.Module, split: datasets.Split | None, batch_size: int, numeric: str = "fp32", world: World = SINGLE
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of `model` on `split` (NaN, NaN when there is no split), the forward pass
    in precision `numeric` (the loss summed in float64). In a run of several processes `split` is this process's
    share, and the sums are taken over every process's."""
    if split is None:
        return math.nan, math.nan
    model.eval()
    # the sums live where the batches do (an image folder keeps its labels on the CPU and its batches on the GPU)
    loss = correct = 0
    for images, labels in split.batches(batch_size):
        with precision.autocast(numeric, images.device):
            output = model(images)
        loss = loss + F.cross_entropy(output.float(), labels, reduction="sum").double()
        correct = correct + (output.argmax(1) == labels).sum()
    if not world.distributed:
        return float(loss) / len(split), float(correct) / len(split)
    device = next(model.parameters()).device
    sums = world.all_sum(torch.tensor([float(loss), float(correct), len(split)], dtype=torch.float64, device=device))
    loss, correct, count = sums.tolist()
    return loss / count, correct / count
