"""The training loop: steps, epochs, evaluation, the plateau rule, the rows of steps.csv and epochs.csv."""

from __future__ import annotations

import logging
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .. import data as datasets
from .. import optim
from ..backend import distributed, precision
from ..backend.distributed import SINGLE, World
from ..records.run import EPOCHS, LAYER_LRS, STEPS, RunDir, to_log_file
from .checkpoint import Checkpointer, Progress
from .setup import Setup

log = logging.getLogger(__name__)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during training; the message says where the run stopped and what its checkpoint holds."""


class Plateau:
    """The paper's stop rule: the loss fell by no more than `min_drop` over `window` iterations.

    Compares the mean mini-batch loss of each window of `window` steps with that of the window before (one host
    sync per window). Its state travels in checkpoints, so a resumed run stops where an uninterrupted one would.
    """

    def __init__(self, window: int, min_drop: float, device: torch.device) -> None:
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


def train(setup: Setup, record: RunDir, progress: Progress) -> str:
    """The training loop, from wherever `progress` stands; returns the final status.

    `completed` when the epoch budget is spent, `diverged` when the training loss, or the validation or test
    loss after an epoch, is non-finite, `stopped` when the plateau rule (`train.plateau`) is met.
    """
    t, per_epoch = setup.config.train, setup.per_epoch
    plateau = Plateau(t.plateau.window, t.plateau.min_drop, setup.device) if t.plateau is not None else None
    if plateau is not None and progress.plateau is not None:
        plateau.load(progress.plateau)
    quiet = None if setup.world.main else True  # one bar per run: rank 0's
    bar = tqdm(total=t.epochs * per_epoch, initial=progress.steps, unit="step", disable=quiet, desc="train")
    checkpointer = Checkpointer(setup, record, setup.config.checkpoint_minutes)
    checkpointer.saved_step = progress.steps if progress.resumed_at else None
    loop = _Loop(setup, record, progress, checkpointer, plateau, bar)
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
    record: RunDir
    progress: Progress
    checkpointer: Checkpointer
    plateau: Plateau | None
    bar: tqdm

    def train_epoch(self, epoch: int) -> str | None:
        """The step loop of `epoch`, from the batch `progress` stands at; a final status if the run ends in it."""
        setup, progress, t = self.setup, self.progress, self.setup.config.train
        optimizer, spec, data, world = setup.optimizer, setup.spec, setup.data, setup.world
        progress.epoch = epoch
        if progress.batch == 0:
            progress.loss_sum = torch.zeros((), device=setup.device)
            progress.correct = torch.zeros((), dtype=torch.long, device=setup.device)
            progress.epoch_seconds = 0.0
        setup.network.train()
        epoch_start = time.perf_counter()
        order = datasets.epoch_order(len(data.train), setup.config.run_seed, epoch)
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
                if logged and not self._log(step_loss, epoch):
                    return _diverged(progress.steps)
                setup.scheduler.step()  # after logging: steps.csv shows the rate this step used
                if self.plateau is not None and self.plateau.reached(step_loss):
                    log.info("plateau: the loss fell by at most %s over %d steps", self.plateau.min_drop,
                             self.plateau.window)  # fmt: skip
                    return "stopped"
                if self._checkpoint_due(logged) and progress.batch < setup.per_epoch:
                    progress.epoch_seconds += time.perf_counter() - epoch_start
                    epoch_start = time.perf_counter()
                    self.checkpointer.save(progress, self.plateau.state() if self.plateau is not None else None)
        finally:
            progress.epoch_seconds += time.perf_counter() - epoch_start
        return None

    def _log(self, step_loss: torch.Tensor, epoch: int) -> bool:
        """The logged step's row of steps.csv (and layer_lrs.csv) and the bar's loss; False when the epoch's loss
        sum is no longer finite."""
        progress, setup = self.progress, self.setup
        value = step_loss.item()
        _log_step(self.record, setup.optimizer, setup.spec, progress.steps, epoch, value,
                  self.checkpointer.seconds(progress))  # fmt: skip
        self.bar.set_postfix(epoch=epoch, loss=f"{value:.4f}", refresh=False)
        return math.isfinite(progress.loss_sum.item())

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
        progress, data, t, per_epoch = self.progress, self.setup.data, self.setup.config.train, self.setup.per_epoch
        seen = len(data.train) if not t.drop_last else per_epoch * t.batch_size
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
        self.record.append_row(EPOCHS, row)
        progress.epochs, progress.last_epoch = epoch, row
        progress.epoch, progress.batch = epoch + 1, 0
        if evaluated and (not math.isfinite(test_loss) or (data.val is not None and not math.isfinite(val_loss))):
            return _diverged(progress.steps)  # the weights blew up in the epoch's last steps
        self.checkpointer.save(progress, self.plateau.state() if self.plateau is not None else None)
        val = f", val loss {val_loss:.4f}" if data.val is not None else ""  # fold=none: no validation split
        scores = f"{val}, test loss {test_loss:.4f} acc {test_acc:.3f}" if evaluated else ""
        if self.setup.world.main:
            line = f"epoch {epoch}/{t.epochs}: train loss {train_loss:.4f} acc {row['train_acc']:.3f}{scores}"
            self.bar.write(line)
            to_log_file(line)
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
        STEPS,
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
        record.append_row(LAYER_LRS, {"step": step, **rates})


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
