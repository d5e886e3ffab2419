"""`check(cfg)`: every value a run cannot use refused before any data is loaded, with what is valid: an unknown
key anywhere (with the nearest valid one), a wrong type, a value out of its range, an unknown name, a folder
option that names a file. The run's own values are typed by `schema`; a group's values (optimizer, network,
initialization) by the defaults its registry declares."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .coerce import into_schema
from .errors import ConfigError, first_line
from .ranges import check_group_ranges
from .schema import DATASET_SCHEMAS, RunConfig, schema_of
from .sources import GROUPS, group_options


def _check_optimizer_builds(name: str, options: Mapping[str, Any]) -> None:
    """The optimizer's own argument checks, on a two-weight network: a value its class refuses is named here,
    before any data is loaded or any run directory exists."""
    import torch

    from .. import optim

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(2, 1))
    try:
        optim.build(name, model, input_shape=(2,), **options)
    except (ValueError, TypeError, RuntimeError) as e:
        raise ConfigError(f"optimizer={name}: {first_line(e)}") from None


def check(cfg: DictConfig) -> DictConfig:
    """`cfg` (Hydra's node aside) checked and typed; raises `ConfigError` naming the first bad value."""
    run = OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"])
    for group in GROUPS:
        if not isinstance(run.get(group), DictConfig):
            raise ConfigError(f"{group} is not chosen: add {group}=NAME (valid: {', '.join(group_options(group))})")
    try:
        missing = sorted(OmegaConf.missing_keys(run))
    except OmegaConfBaseException as e:  # an interpolation that names no key, e.g. results_dir=/a${b}
        raise ConfigError(f"{e.full_key}: {first_line(e)} (a value's ${{...}} names another key of the config; "
                          "for a literal '${{', write '\\${{')") from None  # fmt: skip
    if missing:
        hint = " (the folder holding the dataset's splits)" if "dataset.root" in missing else ""
        raise ConfigError(f"{', '.join(missing)} must be set{hint}: add {missing[0]}=VALUE to the command line")
    try:
        values = OmegaConf.to_container(run, resolve=True)
    except OmegaConfBaseException as e:
        raise ConfigError(f"{e.full_key}: {first_line(e)}") from None
    if isinstance(values.get("fold"), str) and values["fold"].lower() in ("none", "null"):
        values["fold"] = None
    typed = into_schema(RunConfig, values, "")
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
        from ..records.tuning import tuned_rate

        tuned_rate(cfg)  # a missing winner is named here, before any run starts
    return typed


def _check_options(typed: DictConfig, values: dict[str, Any]) -> None:
    """What a run's options need: the loggers' packages; an optimizer that torch.compile can train."""
    from .. import optim
    from ..records.trackers import missing

    absent = missing(values.get("logger"))
    if absent:  # before any run starts
        raise ConfigError(absent[0])
    if typed.train.compile and optim.from_config(values["optimizer"])[0].needs_create_graph:
        raise ConfigError(f"train.compile=true cannot train optimizer={values['optimizer']['name']}: it needs the "
                          "graph of the backward pass (double backward), which torch.compile does not give; use "
                          "train.compile=false")  # fmt: skip


def _type_groups(typed: DictConfig, values: dict[str, Any]) -> None:
    """Check each chosen group entry (dataset, model, init, optimizer) against its own schema, into `typed`."""
    from .. import models, optim

    dataset = values["dataset"]
    if dataset["name"] not in DATASET_SCHEMAS:
        raise ConfigError(f"unknown dataset {dataset['name']!r}; valid names: {', '.join(DATASET_SCHEMAS)}")
    typed.dataset = into_schema(DATASET_SCHEMAS[dataset["name"]], dataset, "dataset.")
    check_group_ranges("dataset", typed.dataset)
    if dataset.get("classes") is not None:
        from ..data.classes import selection

        try:
            selection(dataset["classes"])
        except ValueError as e:
            raise ConfigError(str(e)) from None

    name = values["model"]["name"]
    typed.model = into_schema(schema_of("model", name, models.options(name)), values["model"], "model.")
    check_group_ranges("model", typed.model)
    name = values["init"]["name"]
    typed.init = into_schema(schema_of("init", name, models.init_options(name)), values["init"], "init.")
    check_group_ranges("init", typed.init)
    spec, preset, _ = optim.from_config(values["optimizer"])  # a class named by `_target_` is registered here
    described = {"label": None}  # any optimizer's name in the report; a `_target_` one also its capability flags
    if spec.target is not None:
        described.update(_target_=spec.target, **{flag: getattr(spec, flag) for flag in optim.FLAGS})
    schema = schema_of("optimizer", spec.name, {"preset": preset, **described, **spec.keywords(preset)})
    typed.optimizer = into_schema(schema, values["optimizer"], "optimizer.")  # an unknown preset was refused above
    chosen = {k: v for k, v in OmegaConf.to_container(typed.optimizer).items() if k not in optim.META_KEYS}
    check_group_ranges("optimizer", spec.hparams(preset, **chosen))
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
