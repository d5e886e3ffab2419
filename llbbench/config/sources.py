"""Where the run's configuration comes from, and composing it: llbbench's own config groups (`conf/`, shipped as
the package `llbbench.conf`; Hydra finds it at `pkg://llbbench.conf` in editable and wheel installs alike), the
user's folders (`LLBBENCH_CONFIG_PATH`) and installed plug-ins' config packages (entry points
`llbbench.configs`)."""

from __future__ import annotations

import functools
import importlib.resources
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from .errors import ConfigError

CONFIG_PACKAGE = "llbbench.conf"
SEARCH_PATH = f"pkg://{CONFIG_PACKAGE}"
CONFIG_NAME = "config"
GROUPS = ("dataset", "model", "optimizer", "init")  # the config groups every run chooses one entry of


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
