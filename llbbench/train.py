"""One run: build data, network and optimizer from the config, train, evaluate every epoch, record."""

from __future__ import annotations

import hashlib
import logging
import math
import random
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import nn
from tqdm.auto import tqdm

from . import config, gpus, models, optim, precision
from . import data as datasets
from .runs import CHECKPOINT, RunDir, RunLock, environment, final_status, identity
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


def prepare(cfg: DictConfig) -> Setup:
    """Build data, network and optimizer; bad input raises `ValueError`/`FileNotFoundError` with its reason.

    The config is checked (`config.check`: keys, types, ranges, names) before any data is loaded."""
    typed = config.check(cfg)
    device = resolve_device(typed.device)
    seed_everything(typed.seed)
    options = OmegaConf.to_container(typed.dataset, enum_to_str=True)
    data = datasets.build(options, device=device, fold=typed.fold, folds=typed.cv.folds, cv_seed=typed.cv.seed)
    datasets.check_fingerprint(options)
    per_epoch = data.train.num_batches(typed.train.batch_size, typed.train.drop_last)
    if per_epoch == 0:
        raise ValueError(
            f"train.batch_size={typed.train.batch_size} with train.drop_last=true leaves no mini-batch of the "
            f"{len(data.train)} training images; use a batch size of at most {len(data.train)}"
        )
    model_name, model_opts = _options(typed.model)
    model = models.build(model_name, data.num_classes, data.input_shape, **model_opts)
    init_name, init_opts = _options(typed.init)
    models.initialize(model, init_name, **init_opts)
    numeric = precision.resolve(typed.train.precision.name, device)
    channels_last = precision.resolve_channels_last(typed.train.channels_last, device)
    precision.check_layout(channels_last, device)
    precision.configure(numeric, device)
    model.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    opt_name, opt_opts = _options(typed.optimizer)
    optimizer = optim.build(opt_name, model, input_shape=data.input_shape, **opt_opts)
    t = typed.train
    scheduler = build_scheduler(optimizer, t.schedule.name, t.schedule_k, per_epoch, t.epochs * per_epoch)
    return Setup(data, model, optimizer, optim.get(opt_name), device, scheduler, numeric, channels_last)


def execute(cfg: DictConfig, run_dir: str | Path) -> str:
    """Run `cfg` in `run_dir` unless it has already ended there or another process is training it.

    Returns the status: `completed`, `diverged`, `stopped` or `failed` for a run trained now, `skipped` for one
    that had ended already (`rerun=true` trains it again) or is locked by a live process. A run that `failed` has
    not ended: it is trained again from the start. With `device=auto` on a machine with several GPUs the run first
    claims one that no other run holds (`gpus.claim`), waiting for one if all are busy.
    """
    with RunLock(run_dir) as lock:
        if not lock.acquire():
            log.info("being trained by another process (%s): %s", lock.holder(), run_dir)
            return "skipped"
        done = final_status(run_dir)  # read under the lock: a run that another process just ended is seen
        if done is not None and done != "failed" and not cfg.get("rerun", False):
            log.info("already done (%s): %s; rerun=true trains it again", done, run_dir)
            return "skipped"
        if done is not None:  # a failed run (its cause may be fixed now), or rerun=true: start over
            log.info("%s: %s", "training again after a failure" if done == "failed" else "rerun=true", run_dir)
            RunDir(run_dir).clear()
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if not gpus.should_claim(str(cfg.get("device", "auto")), count):
            return run(cfg, run_dir)["status"]
        with gpus.claim(count) as index:  # several GPUs: this run takes one no other run holds
            cfg.device = f"cuda:{index}"  # not part of the run's identity
            log.info("on GPU %d of %d", index, count)
            return run(cfg, run_dir)["status"]


def run(cfg: DictConfig, run_dir: str | Path) -> dict[str, Any]:
    """Train one run described by `cfg` and record it in `run_dir`; returns the summary.

    A checkpoint in `run_dir` is resumed from, to the same result as an uninterrupted run. Bad input raises
    before anything is trained. An error while training is recorded as status `failed` (with the error) and
    returned, so that a sweep can go on.
    """
    setup = prepare(cfg)
    record = RunDir(run_dir)
    run_identity = identity(OmegaConf.to_container(cfg, resolve=True))
    progress = Progress()
    checkpoint = record.read_checkpoint()
    if checkpoint is not None:
        if checkpoint["identity"] != run_identity:
            raise ValueError(f"{record.path / CHECKPOINT} belongs to another config; move it away or set rerun=true")
        restore(setup, checkpoint, progress)
        record.truncate_rows("steps.csv", "step", progress.steps)
        record.truncate_rows("layer_lrs.csv", "step", progress.steps)
        record.truncate_rows("epochs.csv", "epoch", progress.epochs)
        log.info("resuming from step %d (epoch %d, batch %d)", progress.steps, progress.epoch, progress.batch)
    else:
        record.clear()
        cfg.train.precision, cfg.train.channels_last = setup.precision, setup.channels_last  # as resolved here
        record.write_text("config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
        record.write_json("env.json", environment(setup.device))
    try:
        status = train(setup, cfg, record, progress, run_identity)
        error = None
    except Exception as e:
        log.exception("run failed")
        status, error = "failed", {"type": type(e).__name__, "message": str(e), "traceback": traceback.format_exc()}
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
    if error:
        summary["error"] = error
    if status == "diverged":
        summary["diverged_at_step"] = progress.steps
    record.write_json("summary.json", summary)
    if not cfg.get("keep_checkpoint", False):
        record.remove_checkpoint()
    return summary


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


def checkpoint_state(setup: Setup, run_identity: dict[str, Any], progress: Progress, seconds: float) -> dict[str, Any]:
    """What a resumed run needs to continue exactly: weights, optimizer, random states, position, metrics."""
    return {
        "identity": run_identity,
        "model": setup.model.state_dict(),
        "optimizer": setup.optimizer.state_dict(),
        "scheduler": setup.scheduler.state_dict(),
        "rng": {
            "python": random.getstate(),
            "numpy": np.random.get_state(),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        },
        "progress": {**asdict(progress), "seconds": seconds, "resumed_at": list(progress.resumed_at)},
    }


def restore(setup: Setup, checkpoint: dict[str, Any], progress: Progress) -> None:
    setup.model.load_state_dict(checkpoint["model"])
    setup.optimizer.load_state_dict(checkpoint["optimizer"])
    setup.scheduler.load_state_dict(checkpoint["scheduler"])
    rng = checkpoint["rng"]
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
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

    def seconds(self, progress: Progress) -> float:
        """Training seconds so far, earlier processes of the run included."""
        return progress.seconds + time.perf_counter() - self.started

    def due(self) -> bool:
        return time.perf_counter() - self.saved >= self.every

    def save(self, progress: Progress, plateau: Plateau | None) -> None:
        progress.plateau = plateau.state() if plateau is not None else None
        state = checkpoint_state(self.setup, self.run_identity, progress, self.seconds(progress))
        self.record.write_checkpoint(state)
        self.saved = time.perf_counter()


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
    bar = tqdm(total=t.epochs * per_epoch, initial=progress.steps, unit="step", disable=None, desc="train")
    checkpointer = Checkpointer(setup, record, run_identity, cfg.get("checkpoint_minutes", 0))
    loop = _Loop(setup, cfg, record, progress, checkpointer, plateau, bar, per_epoch)
    try:
        for epoch in range(progress.epoch, t.epochs + 1):
            status = loop.train_epoch(epoch) or loop.end_epoch(epoch)
            if status is not None:
                return status
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
        model, optimizer, spec, data = setup.model, setup.optimizer, setup.spec, setup.data
        progress.epoch = epoch
        if progress.batch == 0:
            progress.loss_sum = torch.zeros((), device=setup.device)
            progress.correct = torch.zeros((), dtype=torch.long, device=setup.device)
            progress.epoch_seconds = 0.0
        model.train()
        epoch_start = time.perf_counter()
        order = datasets.epoch_order(len(data.train), self.cfg.seed, epoch)
        try:
            for images, labels in data.train.batches(t.batch_size, order, t.drop_last, skip=progress.batch):
                if setup.channels_last:
                    images = images.contiguous(memory_format=torch.channels_last)
                with precision.autocast(setup.precision, setup.device):  # the optimizer steps outside it
                    output = model(images)
                    loss = F.cross_entropy(output, labels)
                optimizer.zero_grad(set_to_none=True)
                try:
                    optim.backward_and_step(spec, optimizer, loss)
                except optim.NonFiniteLoss:  # an optimizer that reads the loss saw it blow up
                    return _diverged(progress.steps + 1)
                progress.steps += 1
                progress.batch += 1
                self.bar.update()
                progress.loss_sum += loss.detach() * len(labels)
                progress.correct += (output.argmax(1) == labels).sum()
                if progress.steps % t.log_every == 0:
                    value = loss.item()
                    seconds = self.checkpointer.seconds(progress)
                    _log_step(self.record, optimizer, spec, progress.steps, epoch, value, seconds)
                    self.bar.set_postfix(epoch=epoch, loss=f"{value:.4f}", refresh=False)
                    if not math.isfinite(progress.loss_sum.item()):
                        return _diverged(progress.steps)
                setup.scheduler.step()  # after logging: steps.csv shows the rate this step used
                if self.plateau is not None and self.plateau.reached(loss.detach()):
                    log.info("plateau: the loss fell by at most %s over %d steps", self.plateau.min_drop,
                             self.plateau.window)  # fmt: skip
                    return "stopped"
                if self.checkpointer.due() and progress.batch < self.per_epoch:
                    progress.epoch_seconds += time.perf_counter() - epoch_start
                    epoch_start = time.perf_counter()
                    self.checkpointer.save(progress, self.plateau)
        finally:
            progress.epoch_seconds += time.perf_counter() - epoch_start
        return None

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
            val_loss, val_acc = evaluate(self.setup.model, data.val, t.eval_batch_size, self.setup.precision)
            test_loss, test_acc = evaluate(self.setup.model, data.test, t.eval_batch_size, self.setup.precision)
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
        self.bar.write(f"epoch {epoch}/{t.epochs}: train loss {train_loss:.4f} acc {row['train_acc']:.3f}{scores}")
        return None


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
    model: nn.Module, split: datasets.Split | None, batch_size: int, numeric: str = "fp32"
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of `model` on `split` (NaN, NaN when there is no split), the forward pass
    in precision `numeric` (the loss summed in float64)."""
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
    return float(loss) / len(split), float(correct) / len(split)
