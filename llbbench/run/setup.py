"""A run's parts, built from its typed config: data, network, optimizer, schedule, on its device."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from .. import config, models, optim
from .. import data as datasets
from ..backend import distributed, precision
from ..backend.device import resolve_device
from ..backend.distributed import SINGLE, World
from ..optim.schedules import build_scheduler
from ..records.run import identity

DEFAULT_THREADS = torch.get_num_threads()  # torch's own, for `train.threads: null`


@dataclass
class Setup:
    """Everything a run trains with, built from its config (`prepare`)."""

    config: DictConfig  # the run's typed, checked config (`config.check`): what every layer below `prepare` reads
    identity: dict[str, Any]  # what defines the run (`records.run.identity`): its checkpoints carry it
    recorded: dict[str, Any]  # its config.yaml: the resolved config, with the values resolved on this machine
    data: datasets.Data
    model: nn.Module
    optimizer: torch.optim.Optimizer
    spec: optim.OptimizerSpec
    device: torch.device
    scheduler: torch.optim.lr_scheduler.LRScheduler  # `train.schedule`, stepped after every optimizer step
    per_epoch: int  # optimizer steps in an epoch
    precision: str = "fp32"  # `train.precision`, resolved (llbbench/backend/precision.py)
    channels_last: bool = False  # `train.channels_last`, resolved
    world: World = SINGLE  # the processes training this run (llbbench/backend/distributed.py)
    replica: nn.Module | None = None  # in a run of several processes, `model` inside DistributedDataParallel
    compiled: nn.Module | None = None  # with train.compile=true: torch.compile of the replica or the model
    sync_bn: bool = False  # `train.sync_bn`, resolved
    val_part: datasets.Split | None = None  # this process's share of the validation and test splits (all of
    test_part: datasets.Split | None = None  # them in one process), evaluated by it and summed over processes

    @property
    def network(self) -> nn.Module:
        """What the training steps run: compiled (train.compile), the replica that synchronises gradients, or the
        model itself (its parameters and state are the model's in every case)."""
        if self.compiled is not None:
            return self.compiled
        return self.replica if self.replica is not None else self.model


@dataclass
class _Network:
    model: nn.Module
    precision: str
    channels_last: bool
    sync_bn: bool


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _options(node: DictConfig) -> tuple[str, dict[str, Any]]:
    """A config group's `name` and its remaining values as plain Python."""
    values = OmegaConf.to_container(node, resolve=True)
    return values.pop("name"), values


def prepare(cfg: DictConfig, world: World = SINGLE, device: str | None = None) -> Setup:
    """Build data, network and optimizer; bad input raises `ValueError`/`FileNotFoundError` with its reason.

    The config is checked (`config.check`: keys, types, ranges, names) before any data is loaded; `cfg` itself is
    left as it is. `device` is the device this process was given (its GPU in a run of several processes, or the
    GPU it claimed), in place of the config's. In a run of several processes (`world`) every process builds the
    same, and the network is wrapped in DistributedDataParallel, which starts every replica from rank 0's
    weights."""
    typed = config.check(cfg)
    on = resolve_device(device or typed.device)
    torch.set_num_threads(typed.train.threads or DEFAULT_THREADS)  # (a sweep's earlier run may have set others)
    seed_everything(distributed.rank_seed(typed.run_seed, world.rank))
    options = OmegaConf.to_container(typed.dataset, enum_to_str=True)
    data = datasets.build(options, device=on, fold=typed.fold, folds=typed.cv.folds, cv_seed=typed.cv.seed)
    datasets.check_fingerprint(options)
    t = typed.train
    per_epoch = data.train.num_batches(t.batch_size, t.drop_last)
    if per_epoch == 0:
        raise ValueError(
            f"train.batch_size={t.batch_size} with train.drop_last=true leaves no mini-batch of the "
            f"{len(data.train)} training images; use a batch size of at most {len(data.train)}"
        )
    distributed.check_batch(t.batch_size, len(data.train), t.drop_last, world)
    net = _network(typed, data, on, world)
    replica = _replica(net.model, on) if world.distributed else None
    spec, preset, opt_opts = optim.from_config(OmegaConf.to_container(typed.optimizer, resolve=True))
    optimizer = optim.build(spec.name, net.model, preset=preset, input_shape=data.input_shape, **opt_opts)
    scheduler = build_scheduler(optimizer, t.schedule.name, t.schedule_k, per_epoch, t.epochs * per_epoch)
    val_part, test_part = (_part(split, world) for split in (data.val, data.test))
    run_identity, recorded = _identity_and_record(cfg, device, net)
    compiled = torch.compile(replica or net.model) if t.compile else None
    return Setup(typed, run_identity, recorded, data, net.model, optimizer, spec, on, scheduler,
                 per_epoch, net.precision, net.channels_last, world, replica, compiled, net.sync_bn, val_part,
                 test_part)  # fmt: skip


def _network(typed: DictConfig, data: datasets.Data, device: torch.device, world: World) -> _Network:
    """The network, initialized, on `device` in its numeric precision and memory layout (SyncBatchNorm where the
    run synchronises BatchNorm)."""
    model_name, model_opts = _options(typed.model)
    model = models.build(model_name, data.num_classes, data.input_shape, **model_opts)
    init_name, init_opts = _options(typed.init)
    models.initialize(model, init_name, **init_opts)
    t = typed.train
    numeric = precision.resolve(t.precision.name, device)
    channels_last = precision.resolve_channels_last(t.channels_last, device)
    precision.check_layout(channels_last, device)
    precision.configure(numeric, device)
    distributed.check_sync_bn(t.sync_bn, device)
    sync_bn = distributed.resolve_sync_bn(t.sync_bn, device, world.size)
    if sync_bn:  # the same parameters in SyncBatchNorm modules: layer groups and κ see them as BatchNorm
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    return _Network(model, numeric, channels_last, sync_bn)


def _identity_and_record(cfg: DictConfig, device: str | None, net: _Network) -> tuple[dict[str, Any], dict[str, Any]]:
    """The run's identity, and its config as config.yaml records it: the resolved config with the device this
    process was given and the precision, memory layout, BatchNorm and CPU threads as resolved here."""
    values = OmegaConf.to_container(cfg, resolve=True)
    if device is not None:
        values["device"] = device  # not part of the identity
    run_identity = identity(values, with_code=True)
    values["train"].update(precision=net.precision, channels_last=net.channels_last, sync_bn=net.sync_bn,
                           threads=torch.get_num_threads())  # fmt: skip
    return run_identity, values


def _replica(model: nn.Module, device: torch.device) -> nn.Module:
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def _part(split: datasets.Split | None, world: World) -> datasets.Split | None:
    """`world.rank`'s contiguous share of an evaluation split (the split itself in one process)."""
    if split is None or not world.distributed:
        return split
    return split.take(distributed.shard_indices(len(split), world))
