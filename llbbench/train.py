"""One run: build data, network and optimizer from the config, train, evaluate every epoch, record."""

from __future__ import annotations

import logging
import math
import random
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import nn
from tqdm.auto import tqdm

from . import data as datasets
from . import models, optim
from .runs import RunDir, environment

log = logging.getLogger(__name__)


@dataclass
class Setup:
    """Everything a run trains with, built from its config."""

    data: datasets.Data
    model: nn.Module
    optimizer: torch.optim.Optimizer
    spec: optim.OptimizerSpec
    device: torch.device


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


def parse_fold(value: Any) -> int | None:
    """`fold`: an integer, or none/null for training on the whole training set."""
    if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ValueError(f"fold={value!r} must be an integer fold index or none")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _options(node: DictConfig) -> tuple[str, dict[str, Any]]:
    """A config group's `name` and its remaining values as plain Python."""
    values = OmegaConf.to_container(node, resolve=True)
    return values.pop("name"), values


def check_names(cfg: DictConfig) -> None:
    """Fail fast, before any data is loaded, on a name that nothing is registered under."""
    optim.get(cfg.optimizer.name)
    for kind, name, valid in (
        ("dataset", cfg.dataset.name, datasets.names()),
        ("model", cfg.model.name, models.names()),
        ("init", cfg.init.name, models.init_names()),
    ):
        if name not in valid:
            raise ValueError(f"unknown {kind} {name!r}; valid names: {', '.join(valid)}")


def prepare(cfg: DictConfig) -> Setup:
    """Build data, network and optimizer; bad input raises `ValueError`/`FileNotFoundError` with its reason."""
    check_names(cfg)
    device = resolve_device(cfg.device)
    if cfg.train.batch_size < 1:
        raise ValueError(f"train.batch_size={cfg.train.batch_size} must be at least 1")
    seed_everything(cfg.seed)
    data = datasets.build(
        OmegaConf.to_container(cfg.dataset, resolve=True),
        device=device,
        fold=parse_fold(cfg.fold),
        folds=cfg.cv.folds,
        cv_seed=cfg.cv.seed,
    )
    if data.train.num_batches(cfg.train.batch_size, cfg.train.drop_last) == 0:
        raise ValueError(
            f"train.batch_size={cfg.train.batch_size} with train.drop_last=true leaves no mini-batch of the "
            f"{len(data.train)} training images; use a batch size of at most {len(data.train)}"
        )
    model_name, model_opts = _options(cfg.model)
    model = models.build(model_name, data.num_classes, data.input_shape, **model_opts)
    init_name, init_opts = _options(cfg.init)
    models.initialize(model, init_name, **init_opts)
    model.to(device)
    opt_name, opt_opts = _options(cfg.optimizer)
    optimizer = optim.build(opt_name, model, input_shape=data.input_shape, **opt_opts)
    return Setup(data, model, optimizer, optim.get(opt_name), device)


def run(cfg: DictConfig, run_dir: str | Path) -> dict[str, Any]:
    """Train one run described by `cfg` and record it in `run_dir`; returns the summary.

    Bad input raises before anything is trained. An error while training is recorded as status `failed`
    (with the error) and returned, so that a sweep can go on.
    """
    setup = prepare(cfg)
    record = RunDir(run_dir)
    record.write_text("config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    record.write_json("env.json", environment(setup.device))
    started = time.perf_counter()
    progress = Progress()
    try:
        status = train(setup, cfg.train, record, seed=cfg.seed, progress=progress)
        error = None
    except Exception as e:
        log.exception("run failed")
        status, error = (
            "failed",
            {"type": type(e).__name__, "message": str(e), "traceback": traceback.format_exc()},
        )
    summary = {
        "status": status,
        "epochs": progress.epochs,
        "steps": progress.steps,
        "seconds": round(time.perf_counter() - started, 3),
        "num_params": models.num_parameters(setup.model),
        "final": progress.last_epoch,
    }
    if error:
        summary["error"] = error
    if status == "diverged":
        summary["diverged_at_step"] = progress.steps
    record.write_json("summary.json", summary)
    return summary


@dataclass
class Progress:
    """How far a run got: completed epochs, steps taken, and the last epoch's metrics."""

    epochs: int = 0
    steps: int = 0
    last_epoch: dict[str, float] | None = None


def train(setup: Setup, cfg: DictConfig, record: RunDir, *, seed: int, progress: Progress) -> str:
    """The training loop; returns the final status (`completed` or `diverged`)."""
    model, optimizer, spec, data = setup.model, setup.optimizer, setup.spec, setup.data
    per_epoch = data.train.num_batches(cfg.batch_size, cfg.drop_last)
    started = time.perf_counter()
    bar = tqdm(total=cfg.epochs * per_epoch, unit="step", disable=None, dynamic_ncols=True, desc="train")
    try:
        for epoch in range(1, cfg.epochs + 1):
            model.train()
            epoch_start = time.perf_counter()
            loss_sum = torch.zeros((), device=setup.device)
            correct = torch.zeros((), dtype=torch.long, device=setup.device)
            order = datasets.epoch_order(len(data.train), seed, epoch)
            for images, labels in data.train.batches(cfg.batch_size, order, cfg.drop_last):
                output = model(images)
                loss = F.cross_entropy(output, labels)
                optimizer.zero_grad(set_to_none=True)
                create_graph = spec.needs_create_graph and optimizer.should_create_graph()
                with warnings.catch_warnings():
                    # such optimizers drop the graph in step(): the reference cycle torch warns of does not last
                    warnings.filterwarnings("ignore", "Using backward\\(\\) with create_graph=True")
                    loss.backward(create_graph=create_graph)
                if spec.needs_loss:
                    optimizer.step(loss=loss.detach())
                else:
                    optimizer.step()
                progress.steps += 1
                bar.update()
                loss_sum += loss.detach() * len(labels)
                correct += (output.argmax(1) == labels).sum()
                if progress.steps % cfg.log_every == 0:
                    value = loss.item()
                    _log_step(record, optimizer, spec, progress.steps, epoch, value, time.perf_counter() - started)
                    bar.set_postfix(epoch=epoch, loss=f"{value:.4f}", refresh=False)
                    if not math.isfinite(loss_sum.item()):
                        return _diverged(progress.steps)
            train_seconds = time.perf_counter() - epoch_start
            seen = len(data.train) if not cfg.drop_last else per_epoch * cfg.batch_size
            train_loss = loss_sum.item() / seen
            if not math.isfinite(train_loss):
                return _diverged(progress.steps)
            eval_start = time.perf_counter()
            val_loss, val_acc = evaluate(model, data.val, cfg.eval_batch_size)
            test_loss, test_acc = evaluate(model, data.test, cfg.eval_batch_size)
            row = {
                "epoch": epoch,
                "step": progress.steps,
                "train_loss": train_loss,
                "train_acc": correct.item() / seen,
                "val_loss": val_loss,
                "val_acc": val_acc,
                "test_loss": test_loss,
                "test_acc": test_acc,
                "seconds": round(train_seconds, 3),
                "eval_seconds": round(time.perf_counter() - eval_start, 3),
            }
            record.append_row("epochs.csv", row)
            progress.epochs, progress.last_epoch = epoch, row
            bar.write(
                f"epoch {epoch}/{cfg.epochs}: train loss {train_loss:.4f} acc {row['train_acc']:.3f}, "
                f"val loss {val_loss:.4f}, test loss {test_loss:.4f} acc {test_acc:.3f}"
            )
    finally:
        bar.close()
    return "completed"


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
def evaluate(model: nn.Module, split: datasets.Split | None, batch_size: int) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of `model` on `split` (NaN, NaN when there is no split)."""
    if split is None:
        return math.nan, math.nan
    model.eval()
    loss = torch.zeros((), dtype=torch.float64, device=split.labels.device)
    correct = torch.zeros((), dtype=torch.long, device=split.labels.device)
    for images, labels in split.batches(batch_size):
        output = model(images)
        loss += F.cross_entropy(output, labels, reduction="sum").double()
        correct += (output.argmax(1) == labels).sum()
    return loss.item() / len(split), correct.item() / len(split)
