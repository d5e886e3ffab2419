"""The run's configuration: where it lives, its resolvers, its typed schema, and the check of a composed config.

`conf/` (shipped inside the package as `llbbench.conf`) holds Hydra's config groups; Hydra finds it at
`pkg://llbbench.conf` in editable and wheel installs alike. Importing this module registers the resolvers the
YAML files use (`${pick:...}`, `${run_id:}`, `${data_fingerprint:}`).

`check(cfg)` refuses, before any data is loaded, every value a run cannot use: an unknown key anywhere (with the
nearest valid one), a wrong type, a value out of its range, an unknown name. The run's own values are typed by
the dataclasses below (OmegaConf checks them on merge); a group's values (optimizer, network, initialization)
are typed by the defaults its registry declares.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import functools
import importlib.resources
import math
import os
import re
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException, ValidationError

from .optim.schedules import SCHEDULES

CONFIG_PACKAGE = "llbbench.conf"
SEARCH_PATH = f"pkg://{CONFIG_PACKAGE}"
CONFIG_NAME = "config"
GROUPS = ("dataset", "model", "optimizer", "init")  # the config groups every run chooses one entry of


class ConfigError(ValueError):
    """A config value a run cannot use; the message names it and what is valid."""


CONFIG_PATH_ENV = "LLBBENCH_CONFIG_PATH"  # the user's config folders, os.pathsep-separated
CONFIG_ENTRY_POINTS = "llbbench.configs"  # an installed package's config folders: each entry point names a module


def user_config_dirs() -> list[Path]:
    """The folders of `LLBBENCH_CONFIG_PATH`, in order; one that is not a folder is refused."""
    dirs = [Path(p).expanduser().resolve() for p in os.environ.get(CONFIG_PATH_ENV, "").split(os.pathsep) if p]
    for folder in dirs:
        if not folder.is_dir():
            raise ConfigError(f"{CONFIG_PATH_ENV}: {folder} is not a folder (it holds config groups, e.g. "
                              "optimizer/NAME.yaml)")  # fmt: skip
    return dirs


def search_path() -> list[str]:
    """Where configs are found beside llbbench's own (which come first, so these add entries and never replace
    one): the user's folders (`LLBBENCH_CONFIG_PATH`), then each installed plug-in's config package."""
    return [*(f"file://{folder}" for folder in user_config_dirs()), *_plugin_configs()]


@functools.cache
def _plugin_configs() -> tuple[str, ...]:
    from importlib import metadata

    return tuple(f"pkg://{entry.value}" for entry in metadata.entry_points(group=CONFIG_ENTRY_POINTS))


def _group_options(root: Any, prefix: str = "") -> set[tuple[str, str]]:
    """(group, option) of every YAML file in a config folder's groups (a folder path or a package's resources)."""
    found = set()
    for child in root.iterdir():
        if child.is_dir() and not child.name.startswith(("_", ".")):
            found |= _group_options(child, f"{prefix}{child.name}/")
        elif prefix and child.name.endswith((".yaml", ".yml")):
            found.add((prefix[:-1], child.name.rsplit(".", 1)[0]))
    return found


def added_group_options() -> dict[str, list[str]]:
    """The options, by group, that the user's config folders and the installed plug-ins add to llbbench's own.
    (Hydra's help lists the groups of the search path it started with: llbbench's alone.)"""
    own = _group_options(config_dir())
    added: set[tuple[str, str]] = set()
    for entry in search_path():
        scheme, _, where = entry.partition("://")
        try:
            root = Path(where) if scheme == "file" else importlib.resources.files(where)
            added |= _group_options(root)
        except (ImportError, OSError, TypeError):  # a plug-in that cannot load says so when a run uses it
            continue
    by_group: dict[str, list[str]] = {}
    for group, option in sorted(added - own):
        by_group.setdefault(group, []).append(option)
    return by_group


def with_search_path(overrides: list[str] | tuple[str, ...]) -> list[str]:
    """`overrides` with `hydra.searchpath` extended by `search_path()` (after any folders the overrides name)."""
    extra = search_path()
    if not extra:
        return list(overrides)
    from hydra.core.override_parser.overrides_parser import OverridesParser

    given, rest = [], []
    for override in overrides:
        if override.split("=", 1)[0].lstrip("+") == "hydra.searchpath":
            value = OverridesParser.create().parse_override(override).value()
            given += list(value) if isinstance(value, list) else [value]
        else:
            rest.append(override)
    entries = [*given, *(e for e in extra if e not in given)]
    return [*rest, f"hydra.searchpath=[{','.join(entries)}]"]


def config_dir() -> Path:
    """The folder of the config groups (the checkout's `conf/`, or its copy inside an installed wheel)."""
    return Path(str(importlib.resources.files(CONFIG_PACKAGE)))


def group_options(group: str) -> list[str]:
    """The entries of config group `group` (`conf/<group>/*.yaml`, and the user's folders'), sorted."""
    return sorted({p.stem for folder in (config_dir(), *user_config_dirs()) for p in (folder / group).glob("*.yaml")})


def compose(overrides: list[str] | tuple[str, ...] = (), hydra: bool = False) -> DictConfig:
    """The run config for `overrides`, composed by Hydra outside any app (with Hydra's own node if `hydra`)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    with initialize_config_module(config_module=CONFIG_PACKAGE, version_base="1.3"):
        return hydra_compose(CONFIG_NAME, overrides=with_search_path(overrides), return_hydra_config=hydra)


def error_line(error: BaseException, overrides: list[str] | tuple[str, ...] = ()) -> str:
    """One line saying what is wrong, for any error of composing or checking a config with `overrides` (Hydra's
    own included: an unknown entry of a group with the valid ones, an unknown key with the valid keys beside it,
    a malformed override with how to write it)."""
    from hydra.errors import MissingConfigException, OverrideParseException

    if isinstance(error, MissingConfigException) and error.missing_cfg_file and error.options:
        group, _, name = error.missing_cfg_file.rpartition("/")
        return f"{group}={name}: there is no such {group} config; valid: {', '.join(error.options)}"
    if isinstance(error, OverrideParseException):
        key, equals, value = error.override.partition("=")
        if not error.override.isascii():
            return (f"override {error.override!r} holds characters that Hydra takes only inside quotes: quote the "
                    f"value, e.g. '{key}=\"{value}\"'")  # fmt: skip
        if not equals:
            return f"override {error.override!r} has no '=': write {key.lstrip('~+')}=VALUE (or ~{key} to remove it)"
        detail = "; ".join(line.strip() for line in error.message.splitlines()[:-1] if line.strip())
        special = sorted({c for c in value if c in SYNTAX_CHARACTERS})
        if special and not value.startswith(("[", "{", "'", '"')):
            shown = " ".join(repr(c) for c in special)
            return (
                f"override {error.override!r}: {shown} in a value {'is' if len(special) == 1 else 'are'} part of "
                f"Hydra's override syntax; quote the value to mean it as written, e.g. '{key}=\"{value}\"'"
                + ("; '~' is not expanded to your home folder: write the full path" if "~" in special else "")
            )
        return (f"override {error.override!r} is malformed ({detail}): write KEY=VALUE, a list as [a,b], a group of "
                "values as {k: v}, and quote a value with spaces or special characters")  # fmt: skip
    text = _first_line(error)
    ambiguous = re.match(r"Ambiguous value for argument '([^=']+)=(.*)'", text)
    if ambiguous:  # a comma outside -m: a sweep or a list was meant, or one value that holds a comma
        key, value = ambiguous.groups()
        return (f"override '{key}={value}': a comma makes a sweep (add -m to run one run per value) or, in brackets, "
                f"a list ({key}=[a,b]); for one value that holds a comma, quote it: '{key}=\"{value}\"'")  # fmt: skip
    cause = error.__cause__
    unknown = re.fullmatch(r"Could not override '([^']+)'\.", text)
    if unknown and isinstance(cause, ConfigKeyError | ConfigAttributeError) and "BasicLauncherConf" not in str(cause):
        return _unknown_override(unknown.group(1), overrides)
    if isinstance(cause, OmegaConfBaseException):
        text = f"{text.rstrip('.')}: {_first_line(cause)}"
        if "BasicLauncherConf" in str(cause):
            text += " (the default launcher runs one run after another: choose a launcher first, e.g. " \
                    "hydra/launcher=joblib)"  # fmt: skip
    return text


SYNTAX_CHARACTERS = "()[]{}=,:'\"#~ "  # what Hydra's grammar takes as syntax, not as part of an unquoted value


def _unknown_override(key: str, overrides: list[str] | tuple[str, ...]) -> str:
    """An override of a key the config does not have: the nearest valid key, and those beside it."""
    parent, _, leaf = key.rpartition(".")
    rest = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") != key]
    try:
        node = OmegaConf.select(compose(rest, hydra=key.startswith("hydra.")), parent) if parent else None
    except Exception:  # the other overrides do not compose either: say what is known
        node = None
    if parent and not isinstance(node, DictConfig):
        return f"unknown key {key}: the config has no {parent} (is a group entry missing, e.g. {parent}=NAME?)"
    valid = [str(k) for k in node] if node is not None else []
    close = difflib.get_close_matches(leaf, valid, n=1, cutoff=0.5)
    hint = f"; did you mean {parent}.{close[0]}?" if close else ""
    keys = f" (valid keys of {parent}: {', '.join(valid)})" if valid else ""
    return f"unknown key {key}{hint}{keys}; +{key}=VALUE adds a new key"


# --- resolvers ---


def _pick(key: str, table: DictConfig) -> object:
    """`${pick:KEY,{a: 1, b: 2, default: 3}}`: the table's value for KEY, else its `default`."""
    if key in table:
        return table[key]
    if "default" not in table:
        raise ValueError(f"pick: no value for {key!r} and no default in {dict(table)}")
    return table["default"]


def _run_id(*, _root_: DictConfig) -> str:
    """`${run_id:}`: the run's identity from the config it is part of (Hydra's own node aside).

    It never raises (Hydra would print its own traceback): a config that cannot be resolved gets the id
    `<network>-<optimizer>-invalid`, and `check` then says what is wrong before anything is written there.
    """
    from .records.run import run_id

    try:
        config = OmegaConf.masked_copy(_root_, [key for key in _root_ if key != "hydra"])
        values = OmegaConf.to_container(config, resolve=True)
        if "world_size" in _root_:  # resolved where the launcher's settings are visible (Hydra's node)
            values["world_size"] = _root_.world_size
        return run_id(values)
    except Exception:
        model = OmegaConf.select(_root_, "model.name", default="model", throw_on_missing=False)
        optimizer = OmegaConf.select(_root_, "optimizer.name", default="optimizer", throw_on_missing=False)
        return f"{model}-{optimizer}-invalid"


def _world_size(*, _root_: DictConfig) -> Any:
    """`${world_size:}`: how many processes train the run: torchrun's `WORLD_SIZE` where it is set, else a Slurm
    launcher's `nodes × tasks_per_node` (from Hydra's node of this config, or of the job Hydra is running), else 1.

    It never raises: a malformed `WORLD_SIZE` is returned as it is, and `check` refuses it."""
    import os

    from .backend.distributed import ENV_WORLD_SIZE

    if ENV_WORLD_SIZE in os.environ:
        value = os.environ[ENV_WORLD_SIZE]
        return int(value) if value.strip().isdigit() else value
    launcher = OmegaConf.select(_root_, "hydra.launcher", default=None) if "hydra" in _root_ else None
    if launcher is None:
        from hydra.core.hydra_config import HydraConfig

        launcher = HydraConfig.get().launcher if HydraConfig.initialized() else None
    if launcher is None or "tasks_per_node" not in launcher:
        return 1
    return int(launcher.get("nodes") or 1) * int(launcher.tasks_per_node or 1)


def _data_fingerprint(*, _parent_: DictConfig) -> str:
    """`${data_fingerprint:}` (in a dataset's YAML): what the data at `root` is, or `unavailable`.

    It never raises: a dataset that cannot be read is reported, with its reason, when the run loads it. The
    dataset's options are read without `fingerprint` itself: resolving it from here would call this resolver again,
    nested until Python's recursion limit (and try an offline download at every level).
    """
    from . import data

    try:
        options = {key: _parent_[key] for key in _parent_ if key != "fingerprint"}
        return data.fingerprint({key: OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value)
                                 else value for key, value in options.items()})  # fmt: skip
    except Exception:
        return data.UNAVAILABLE


def _cores_jobs(threads: Any) -> int:
    """`${cores_jobs:${train.threads}}` (hydra/launcher=cores): how many runs at once fill this machine's cores
    at `threads` threads each (null: torch's default, every core: one run)."""
    cores = os.cpu_count() or 1
    return max(1, cores // int(threads)) if isinstance(threads, int) and threads >= 1 else 1


def _tuned_lr(configured: Any, *, _root_: DictConfig) -> Any:
    """`${tuned_lr:RATE}` (each optimizer's `lr`): RATE, or with `tuned=true` the winner in tuning.json.

    It never raises: with `tuned=true` and no winner it gives RATE, and `check` then names what is missing."""
    if not _root_.get("tuned", False):
        return configured
    from .records.tuning import tuned_rate

    try:
        return tuned_rate(_root_, configured)
    except Exception:
        return configured


def _fold_seed(seed: Any, fold: Any) -> Any:
    """`${fold_seed:${seed},${fold}}` (`run_seed`): the seed a run uses, its own for every fold, so that the folds
    also sample the initialization: `seed` on fold=none, else seed + 1000·(fold + 1). Anything not an integer
    is passed on for the schema to name."""
    if fold is None or str(fold).lower() in ("none", "null"):
        return seed
    if isinstance(seed, int) and isinstance(fold, int):
        return seed + 1000 * (fold + 1)
    return seed


OmegaConf.register_new_resolver("pick", _pick, replace=True)
OmegaConf.register_new_resolver("fold_seed", _fold_seed, replace=True)
OmegaConf.register_new_resolver("run_id", _run_id, replace=True)
OmegaConf.register_new_resolver("world_size", _world_size, replace=True)
OmegaConf.register_new_resolver("data_fingerprint", _data_fingerprint, replace=True)
OmegaConf.register_new_resolver("tuned_lr", _tuned_lr, replace=True)
OmegaConf.register_new_resolver("cores_jobs", _cores_jobs, replace=True)


# --- the typed schema of the run's own values; `min` in a field's metadata is its smallest valid value ---


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


# --- the valid range of a group's value, by its key (any entry of the group: the registries declare types only) ---


@dataclass(frozen=True)
class Range:
    words: str  # what is valid, as the message says it
    holds: Callable[[float], bool]


POSITIVE = Range("a finite number above 0", lambda v: math.isfinite(v) and v > 0)
NON_NEGATIVE = Range("a finite number of at least 0", lambda v: math.isfinite(v) and v >= 0)
FINITE = Range("a finite number", math.isfinite)
FRACTION = Range("in [0, 1)", lambda v: 0 <= v < 1)
AT_LEAST_ONE = Range("at least 1", lambda v: v >= 1)
RANGES: dict[str, dict[str, Range]] = {
    "optimizer": {
        "lr": POSITIVE,
        "momentum": FRACTION,
        "betas": FRACTION,  # each of the two
        "weight_decay": NON_NEGATIVE,
        "eps": POSITIVE,
        "rho": FRACTION,
        "alpha": FRACTION,
        "initial_accumulator_value": NON_NEGATIVE,
        "lr_decay": NON_NEGATIVE,
        "damping": POSITIVE,
        "kappa_floor": POSITIVE,
        "update_every": AT_LEAST_ONE,
        "xi": NON_NEGATIVE,
        "threshold": FINITE,
        "loss_ema": FRACTION,
        "min_lr_ratio": Range("in [0, 1]", lambda v: 0 <= v <= 1),
        "max_lr_ratio": Range("a finite number of at least 1", lambda v: math.isfinite(v) and v >= 1),
    },
    "init": {"a": POSITIVE, "std": POSITIVE, "gain": POSITIVE},
    "model": {"width": POSITIVE, "dropout": FRACTION, "hidden": AT_LEAST_ONE},
    "dataset": {"mean": FINITE, "std": POSITIVE},  # each channel's
}
CHANNELS = 3  # dataset.mean and dataset.std: one value per colour channel


def _check_group_ranges(group: str, values: Mapping[str, Any]) -> None:
    """Each value of `group` whose key has a range (a list: each of its items) is in it; else `ConfigError`."""
    for key, rule in RANGES[group].items():
        value = values.get(key)
        items = list(value) if isinstance(value, list | tuple | ListConfig) else [value]
        if value is None or all(
            isinstance(v, int | float) and not isinstance(v, bool) and rule.holds(v) for v in items
        ):
            continue
        which = "each value" if len(items) > 1 else "it"
        raise ConfigError(f"{group}.{key}={_plain(value)} is out of range: {which} must be {rule.words}")
    if group == "dataset":
        for key in ("mean", "std"):
            if len(values[key]) != CHANNELS:
                raise ConfigError(f"dataset.{key}={_plain(values[key])} must hold {CHANNELS} values, one per channel")


def _plain(value: Any) -> Any:
    """A list value as a message shows it: `[0.9, 1.5]`."""
    if isinstance(value, ListConfig):
        return OmegaConf.to_container(value)
    return list(value) if isinstance(value, tuple) else value


def _check_optimizer_builds(name: str, options: Mapping[str, Any]) -> None:
    """The optimizer's own argument checks, on a two-weight network: a value its class refuses is named here,
    before any data is loaded or any run directory exists."""
    import torch

    from . import optim

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(2, 1))
    try:
        optim.build(name, model, input_shape=(2,), **options)
    except (ValueError, TypeError, RuntimeError) as e:
        raise ConfigError(f"optimizer={name}: {_first_line(e)}") from None


# --- the check ---


def check(cfg: DictConfig) -> DictConfig:
    """`cfg` (Hydra's node aside) checked and typed; raises `ConfigError` naming the first bad value."""
    run = OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"])
    for group in GROUPS:
        if not isinstance(run.get(group), DictConfig):
            raise ConfigError(f"{group} is not chosen: add {group}=NAME (valid: {', '.join(group_options(group))})")
    try:
        missing = sorted(OmegaConf.missing_keys(run))
    except OmegaConfBaseException as e:  # an interpolation that names no key, e.g. results_dir=/a${b}
        raise ConfigError(f"{e.full_key}: {_first_line(e)} (a value's ${{...}} names another key of the config; "
                          "for a literal '${{', write '\\${{')") from None  # fmt: skip
    if missing:
        hint = " (the folder holding the dataset's splits)" if "dataset.root" in missing else ""
        raise ConfigError(f"{', '.join(missing)} must be set{hint}: add {missing[0]}=VALUE to the command line")
    try:
        values = OmegaConf.to_container(run, resolve=True)
    except OmegaConfBaseException as e:
        raise ConfigError(f"{e.full_key}: {_first_line(e)}") from None
    if isinstance(values.get("fold"), str) and values["fold"].lower() in ("none", "null"):
        values["fold"] = None
    typed = _typed(RunConfig, values, "")
    for group in GROUPS:
        if not isinstance(values[group], dict) or "name" not in values[group]:
            raise ConfigError(f"{group} must be a config group entry with a name, e.g. {group}=NAME")

    _check_name(typed.experiment_name)
    _check_folders(typed)
    _type_groups(typed, values)
    _check_options(typed, values)
    if typed.fold is not None and typed.fold >= typed.cv.folds:
        raise ConfigError(f"fold={typed.fold} is out of range: use 0..{typed.cv.folds - 1} (cv.folds) or none")
    if typed.saddle.snapshot_every > typed.saddle.steps:  # Fig. 8's plane needs a snapshot after the start
        raise ConfigError(f"saddle.snapshot_every={typed.saddle.snapshot_every} is more than saddle.steps="
                          f"{typed.saddle.steps}: no weights would be kept after the start; use at most "
                          f"{typed.saddle.steps}")  # fmt: skip
    if typed.tuned:
        from .records.tuning import tuned_rate

        tuned_rate(cfg)  # a missing winner is named here, before any run starts
    return typed


def _check_options(typed: DictConfig, values: dict[str, Any]) -> None:
    """What a run's options need: the loggers' packages; an optimizer that torch.compile can train."""
    from . import optim
    from .records.trackers import missing

    absent = missing(values.get("logger"))
    if absent:  # before any run starts
        raise ConfigError(absent[0])
    if typed.train.compile and optim.from_config(values["optimizer"])[0].needs_create_graph:
        raise ConfigError(f"train.compile=true cannot train optimizer={values['optimizer']['name']}: it needs the "
                          "graph of the backward pass (double backward), which torch.compile does not give; use "
                          "train.compile=false")  # fmt: skip


def _type_groups(typed: DictConfig, values: dict[str, Any]) -> None:
    """Check each chosen group entry (dataset, model, init, optimizer) against its own schema, into `typed`."""
    from . import models, optim

    dataset = values["dataset"]
    if dataset["name"] not in DATASET_SCHEMAS:
        raise ConfigError(f"unknown dataset {dataset['name']!r}; valid names: {', '.join(DATASET_SCHEMAS)}")
    typed.dataset = _typed(DATASET_SCHEMAS[dataset["name"]], dataset, "dataset.")
    _check_group_ranges("dataset", typed.dataset)
    if dataset.get("classes") is not None:
        from .data.classes import selection

        try:
            selection(dataset["classes"])
        except ValueError as e:
            raise ConfigError(str(e)) from None

    name = values["model"]["name"]
    typed.model = _typed(_schema_of("model", name, models.options(name)), values["model"], "model.")
    _check_group_ranges("model", typed.model)
    name = values["init"]["name"]
    typed.init = _typed(_schema_of("init", name, models.init_options(name)), values["init"], "init.")
    _check_group_ranges("init", typed.init)
    spec, preset, _ = optim.from_config(values["optimizer"])  # a class named by `_target_` is registered here
    described = {"label": None}  # any optimizer's name in the report; a `_target_` one also its capability flags
    if spec.target is not None:
        described.update(_target_=spec.target, **{flag: getattr(spec, flag) for flag in optim.FLAGS})
    schema = _schema_of("optimizer", spec.name, {"preset": preset, **described, **spec.keywords(preset)})
    typed.optimizer = _typed(schema, values["optimizer"], "optimizer.")  # an unknown preset was refused above
    chosen = {k: v for k, v in OmegaConf.to_container(typed.optimizer).items() if k not in optim.META_KEYS}
    _check_group_ranges("optimizer", spec.hparams(preset, **chosen))
    _check_optimizer_builds(spec.name, {"preset": preset, **chosen})


def folder_options(typed: DictConfig) -> dict[str, str]:
    """The options of a run that name a folder it writes in or reads from, with their values (those set)."""
    dataset, logger = typed.dataset, typed.logger
    found = {"results_dir": typed.results_dir, "dataset.root": dataset.root,
             "dataset.predecoded_dir": dataset.get("predecoded_dir")}  # fmt: skip
    for name in ("tensorboard", "wandb"):
        if logger is not None and logger.get(name) is not None:
            found[f"logger.{name}.dir"] = logger[name].dir
    return {option: value for option, value in found.items() if value is not None}


def _check_folders(typed: DictConfig) -> None:
    """Each folder option names a folder, or a path where one can be made: not empty, not a file, not inside a
    file. Only looked at here, nothing written (a command checks that it can write where it writes)."""
    for option, value in folder_options(typed).items():
        if not str(value).strip():
            raise ConfigError(f"{option} is empty: name a folder, e.g. {option}=results")
        path = Path(value).expanduser()
        if path.exists() and not path.is_dir():
            raise ConfigError(f"{option}={value} is a file, not a folder; name a folder (it is created if missing)")
        existing = next((parent for parent in path.parents if parent.exists()), None)
        if existing is not None and not existing.is_dir():
            raise ConfigError(f"{option}={value} is not a folder this user can write in ({existing} is a file, not a "
                              "folder)")  # fmt: skip


def _check_name(name: str) -> None:
    """`experiment_name` names one folder inside `results_dir`: one path component, not `.` or `..`."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise ConfigError(
            f"experiment_name={name!r} must name one folder inside results_dir (no '/', not '.' or '..'); "
            "to write elsewhere, set results_dir"
        )


def _expected(message: str) -> str:
    """What OmegaConf's "could not be converted to Integer" says, in plain words."""
    if "is not a valid bool" in message:
        return "true or false"
    if "expected one of" in message:
        return "one of " + message.split("expected one of", 1)[1].strip(" []").replace(", ", " | ")
    for kind, words in (("Integer", "an integer"), ("Float", "a number")):
        if message.endswith(f"converted to {kind}"):
            return words
    return f"valid ({message})"


def _first_line(error: Exception) -> str:
    text = getattr(error, "msg", None) or str(error)
    return text.splitlines()[0] if text else type(error).__name__


def _typed(schema: type, values: Mapping[str, Any], prefix: str) -> DictConfig:
    """`values` merged into `schema` (types converted, unknown keys refused), then each field's range checked."""
    _check_sections(schema, values, prefix)
    try:
        typed = OmegaConf.merge(OmegaConf.structured(schema), values)
    except ConfigKeyError as e:
        raise ConfigError(_unknown_key_message(schema, prefix, e.full_key or str(e.key))) from None
    except ValidationError as e:
        key = prefix + (e.full_key or str(e.key))
        value = OmegaConf.select(OmegaConf.create(dict(values)), e.full_key) if e.full_key else None
        raise ConfigError(f"{key}={value!r} is not {_expected(_first_line(e))}") from None
    _check_ranges(schema, typed, prefix)
    return typed


def _check_sections(schema: type, values: Mapping[str, Any], prefix: str) -> None:
    """A field that holds a group of values (a nested schema) is given a mapping, or null where it may be null."""
    hints = typing.get_type_hints(schema)
    for spec in dataclasses.fields(schema):
        nested = _nested_schema(schema, spec.name)
        if spec.name in values and bool in (hints[spec.name], *typing.get_args(hints[spec.name])):
            _check_bool(f"{prefix}{spec.name}", values[spec.name])
        if nested is None or spec.name not in values:
            continue
        value, key = values[spec.name], f"{prefix}{spec.name}"
        if isinstance(value, Mapping):
            _check_sections(nested, value, f"{key}.")
            continue
        if value is None and type(None) in typing.get_args(typing.get_type_hints(schema)[spec.name]):
            continue
        names = [f.name for f in dataclasses.fields(nested)]
        if len(names) <= 3:
            hint = "write it as {" + ", ".join(f"{name}: VALUE" for name in names) + "}"
        else:
            hint = f"set its keys one by one, e.g. {key}.{names[0]}=VALUE (keys: {', '.join(names)})"
        raise ConfigError(f"{key}={value!r} is not a group of values: {hint}")


def _check_bool(key: str, value: Any) -> None:
    """A true/false option is given true, false or null: OmegaConf would take 2, 'yes' or 'on' as true."""
    if value is not None and not isinstance(value, bool):
        raise ConfigError(f"{key}={value!r} is not true or false")


def _check_ranges(schema: type, typed: DictConfig, prefix: str) -> None:
    for spec in dataclasses.fields(schema):
        value = typed[spec.name]
        minimum = spec.metadata.get("min")
        if minimum is not None and isinstance(value, int | float) and not (math.isfinite(value) and value >= minimum):
            finite = "a finite number of " if isinstance(value, float) else ""
            raise ConfigError(f"{prefix}{spec.name}={value} must be {finite}at least {minimum}")
        nested = _nested_schema(schema, spec.name)
        if nested is not None and isinstance(value, DictConfig):
            _check_ranges(nested, value, f"{prefix}{spec.name}.")


def _nested_schema(schema: type, name: str) -> type | None:
    """The dataclass that field `name` of `schema` holds (also when it is optional), or None."""
    hint = typing.get_type_hints(schema).get(name)
    for candidate in (hint, *typing.get_args(hint)):
        if dataclasses.is_dataclass(candidate):
            return candidate
    return None


def _unknown_key_message(schema: type, prefix: str, key: str) -> str:
    *parents, leaf = key.split(".")
    node: type | None = schema
    for parent in parents:  # down to the dataclass that lacks `leaf`
        node = _nested_schema(node, parent) if node is not None else None
    valid = [f.name for f in dataclasses.fields(node)] if node is not None else []
    where = prefix + ".".join(parents) + ("." if parents else "")
    close = difflib.get_close_matches(leaf, valid, n=1, cutoff=0.5)
    hint = f"; did you mean {where}{close[0]}?" if close else ""
    choices = f" (valid keys of {where.rstrip('.') or 'the config'}: {', '.join(valid)})" if valid else ""
    return f"unknown key {where}{leaf}{hint}{choices}"


def _schema_of(group: str, name: str, defaults: Mapping[str, Any]) -> type:
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
