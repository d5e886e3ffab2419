"""The resolvers the YAML files use (`${pick:...}`, `${run_id:}`, `${data_fingerprint:}`, ...), registered with
OmegaConf by `register()` (importing `llbbench.config` does it). Each never raises: a value it cannot give is
left for `check` to name. What each reads besides the config: `data_fingerprint` the dataset's files (the data
it fingerprints, nothing else), `tuned_lr` tuning.json (with `tuned=true` only), `world_size` the launcher's
environment, `cores_jobs` the machine's core count."""

from __future__ import annotations

import os
from typing import Any

from omegaconf import DictConfig, OmegaConf

from . import launchers


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
    from ..records.run import run_id

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

    from ..backend.distributed import ENV_WORLD_SIZE

    if ENV_WORLD_SIZE in os.environ:
        value = os.environ[ENV_WORLD_SIZE]
        return int(value) if value.strip().isdigit() else value
    launcher = OmegaConf.select(_root_, "hydra.launcher", default=None) if "hydra" in _root_ else None
    if launcher is None:
        from hydra.core.hydra_config import HydraConfig

        launcher = HydraConfig.get().launcher if HydraConfig.initialized() else None
    return launchers.processes_per_run(launcher)


def _data_fingerprint(*, _parent_: DictConfig) -> str:
    """`${data_fingerprint:}` (in a dataset's YAML): what the data at `root` is, or `unavailable`.

    It never raises: a dataset that cannot be read is reported, with its reason, when the run loads it. The
    dataset's options are read without `fingerprint` itself: resolving it from here would call this resolver again,
    nested until Python's recursion limit (and try an offline download at every level).
    """
    from .. import data

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
    from ..records.tuning import tuned_rate

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


def register() -> None:
    """Register every resolver with OmegaConf (again: the same functions)."""
    OmegaConf.register_new_resolver("pick", _pick, replace=True)
    OmegaConf.register_new_resolver("fold_seed", _fold_seed, replace=True)
    OmegaConf.register_new_resolver("run_id", _run_id, replace=True)
    OmegaConf.register_new_resolver("world_size", _world_size, replace=True)
    OmegaConf.register_new_resolver("data_fingerprint", _data_fingerprint, replace=True)
    OmegaConf.register_new_resolver("tuned_lr", _tuned_lr, replace=True)
    OmegaConf.register_new_resolver("cores_jobs", _cores_jobs, replace=True)
