"""The typed schema of a run's own values (OmegaConf checks types on merge; `min` in a field's metadata is its
smallest valid value), the datasets' schemas, and the schema of a group entry made from its registry's
defaults."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING, ListConfig

from ..optim.schedules import SCHEDULES


def _at_least(minimum: float, default: Any = MISSING) -> Any:
    return field(default=default, metadata={"min": minimum})


Schedule = enum.Enum("Schedule", {name: name for name in SCHEDULES})
Precision = enum.Enum("Precision", {name: name for name in ("auto", "fp32", "tf32", "bf16")})  # precision.PRECISIONS
DataFormat = enum.Enum("DataFormat", {name: name for name in ("folder", "predecoded")})  # data.FORMATS


@dataclass
class PlateauConfig:
    window: int = _at_least(1)
    min_drop: float = MISSING


@dataclass
class TrainConfig:
    epochs: int = _at_least(1)
    batch_size: int = _at_least(1)
    drop_last: bool = False
    eval_batch_size: int = _at_least(1, 256)
    log_every: int = _at_least(1, 10)
    eval_every: int = _at_least(1, 1)
    precision: Precision = Precision.auto
    channels_last: bool | None = None
    sync_bn: bool | None = None
    compile: bool = False
    schedule: Schedule = Schedule.constant
    schedule_k: float = _at_least(0.0, 0.9)
    plateau: PlateauConfig | None = None
    threads: int | None = _at_least(1, None)


@dataclass
class CVConfig:
    folds: int = _at_least(2, 5)
    seed: int = 0


@dataclass
class TableOneConfig:
    sgd_lr: float = _at_least(0.0)
    weight_decay: float = _at_least(0.0)


@dataclass
class TuneConfig:
    fold: int = _at_least(0, 0)
    max_extend: int = _at_least(0, 2)


@dataclass
class SaddleConfig:
    """`llbbench saddle` (Fig. 8): what it measures; set by experiment/fig8_saddle.yaml."""

    seeds: int = _at_least(1, 5)
    steps: int = _at_least(1, 300)
    probe: int = _at_least(1, 512)
    snapshot_every: int = _at_least(1, 5)
    escape_drop: float = _at_least(0.0, 0.1)
    tune: bool = True
    optimizers: list[str] | None = None  # null: the paper's nine; e.g. +saddle.optimizers=[llb,sgd,adamw]


@dataclass
class TensorBoardConfig:
    dir: str | None = None


@dataclass
class MLflowConfig:
    tracking_uri: str | None = None
    experiment: str | None = None


WandbMode = enum.Enum("WandbMode", {name: name for name in ("offline", "online", "disabled")})


@dataclass
class WandbConfig:
    project: str = "llbbench"
    mode: WandbMode = WandbMode.offline
    dir: str | None = None
    entity: str | None = None


@dataclass
class LoggerConfig:
    """`logger=[...]`: where a run's records also go (records/trackers.py); each entry its own options."""

    tensorboard: TensorBoardConfig | None = None
    mlflow: MLflowConfig | None = None
    wandb: WandbConfig | None = None


@dataclass
class GpusConfig:
    runs_per_gpu: int = _at_least(1, 1)  # runs that share one GPU at once (llbbench/backend/gpus.py)


@dataclass
class RunConfig:
    scale: str = "full"
    seed: int = _at_least(0, 0)
    run_seed: int = _at_least(0, 0)
    device: str = "auto"
    world_size: int = _at_least(1, 1)
    fold: int | None = _at_least(0, 0)
    cv: CVConfig = field(default_factory=CVConfig)
    hp: TableOneConfig = field(default_factory=TableOneConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    saddle: SaddleConfig = field(default_factory=SaddleConfig)
    tuned: bool = False
    results_dir: str = "results"
    experiment_name: str = "runs"
    rerun: bool = False
    checkpoint_minutes: float = _at_least(0.0, 10.0)
    keep_checkpoint: bool = False
    logger: LoggerConfig | None = None
    gpus: GpusConfig = field(default_factory=GpusConfig)
    # each group is checked against the schema of the entry it names (below)
    dataset: Any = MISSING
    model: Any = MISSING
    optimizer: Any = MISSING
    init: Any = MISSING


@dataclass
class CifarConfig:
    name: str = "cifar10"
    root: str = MISSING
    download: bool = False
    subset: int | None = _at_least(1, None)
    test_subset: int | None = _at_least(1, None)
    mean: list[float] = MISSING
    std: list[float] = MISSING
    fingerprint: str = MISSING


@dataclass
class ImageFolderConfig:
    name: str = "imagefolder"
    root: str = MISSING
    train_split: str = "train"
    test_split: str = "val"
    resize: int = _at_least(1, 256)
    crop: int = _at_least(1, 224)
    num_workers: int = _at_least(0, 4)
    format: DataFormat = DataFormat.folder
    predecoded_dir: str | None = None
    download: bool = False  # Imagenette and Imagewoof only: fetch the folder when it is missing
    classes: Any = None  # null (all), 100 (ImageNet-100) or a list of class folder names: data/classes.py checks it
    subset: int | None = _at_least(1, None)
    test_subset: int | None = _at_least(1, None)
    mean: list[float] = MISSING
    std: list[float] = MISSING
    fingerprint: str = MISSING


DATASET_SCHEMAS = {
    "cifar10": CifarConfig,
    **dict.fromkeys(("imagefolder", "imagenet", "imagenette", "imagewoof"), ImageFolderConfig),
}


def schema_of(group: str, name: str, defaults: Mapping[str, Any]) -> type:
    """A dataclass typing `name` and each option by its default's type; any option may be null (the YAML files
    use null for "the preset's value"), and one whose default is None takes any value."""

    def annotation(default: Any) -> Any:
        if isinstance(default, bool):
            return bool | None
        if isinstance(default, int | float):
            return (float if isinstance(default, float) else int) | None
        if isinstance(default, str):
            return str | None
        if isinstance(default, tuple | list | ListConfig):
            return list[Any] | None
        return Any

    def default(value: Any) -> Any:
        if isinstance(value, tuple | list | ListConfig):
            return field(default_factory=lambda: list(value))
        return field(default=value)

    fields = [("name", str, field(default=name))]
    fields += [(key, annotation(value), default(value)) for key, value in defaults.items()]
    return dataclasses.make_dataclass(f"{group}_{name}", fields)
