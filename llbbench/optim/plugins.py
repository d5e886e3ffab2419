"""Optimizers from outside llbbench, in the same registry as its own.

- A config may name any importable `torch.optim.Optimizer` class: `_target_: torch.optim.AdamW` (and a `name`);
  `register_target` registers it, with every keyword of its signature as a hyper-parameter (`keyword_defaults`)
  and the capability flags the config sets.
- An installed package may declare optimizers in the entry-point group `llbbench.optimizers`: each entry point
  loads an `OptimizerSpec`, a list of them, or a callable returning either; `load_plugins` registers them (once,
  on the first lookup of a name the registry lacks). Their configs come through the group `llbbench.configs`
  (llbbench/config/sources.py).
- `code_fingerprint`: what an outside optimizer's code is (its package, version and a hash of its module's
  source), for a run's identity: fixing a bug in it gives new run directories.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
from collections.abc import Mapping
from functools import cache
from importlib import metadata
from typing import Any

import torch

from . import _REGISTRY, OptimizerSpec, keyword_defaults, register

ENTRY_POINTS = "llbbench.optimizers"
_loaded: list[str] = []  # the plug-ins' names, once loaded


def resolve_target(target: str) -> type[torch.optim.Optimizer]:
    """The optimizer class at import path `target` (e.g. `torch.optim.AdamW`); `ValueError` saying why not."""
    module_name, _, attribute = str(target).rpartition(".")
    if not module_name:
        raise ValueError(f"optimizer._target_={target!r} must be an import path, e.g. torch.optim.AdamW")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(
            f"optimizer._target_={target}: cannot import {module_name} ({e}); put the folder that holds it on "
            "PYTHONPATH, or in LLBBENCH_CONFIG_PATH beside its config"
        ) from None
    found = getattr(module, attribute, None)
    if not (isinstance(found, type) and issubclass(found, torch.optim.Optimizer)):
        what = "nothing of that name" if found is None else f"{type(found).__name__} {found!r}"
        raise ValueError(f"optimizer._target_={target}: {module_name} has {what}, not a torch.optim.Optimizer class")
    return found


def register_target(name: Any, target: str, **flags: bool) -> OptimizerSpec:
    """The registry entry of the class at `target` under `name`, registered on first sight; a name already taken by
    another optimizer (llbbench's own, or another class) is refused."""
    if not isinstance(name, str) or not name:
        raise ValueError(
            f"optimizer._target_={target} needs a name: add `name: {str(target).rpartition('.')[2].lower()}` to its "
            "config (the name of its runs, its tuning entry and its rows)"
        )
    spec = _REGISTRY.get(name)
    if spec is None:
        factory = resolve_target(target)
        return register(OptimizerSpec(name=name, factory=factory, description=f"{target} (named by its config)",
                                      defaults=keyword_defaults(factory), source="config", target=target,
                                      **flags))  # fmt: skip
    if spec.target != target:
        whose = "llbbench's own" if not spec.external else f"already {spec.target or spec.source}"
        raise ValueError(f"optimizer name {name!r} is {whose}: give the config of {target} another name")
    differ = sorted(flag for flag, value in flags.items() if getattr(spec, flag) != bool(value))
    if differ:
        raise ValueError(f"optimizer {name!r} ({target}) was registered with other {', '.join(differ)} in this process")
    return spec


def load_plugins() -> list[str]:
    """Register the optimizers of every installed `llbbench.optimizers` entry point (once); their names."""
    if _loaded:
        return _loaded[1:]
    _loaded.append("")  # loading: a plug-in that looks a name up does not load again
    for entry in metadata.entry_points(group=ENTRY_POINTS):
        where = f"the optimizer plug-in {entry.name} ({entry.value})"
        try:
            found = entry.load()
            found = found() if callable(found) and not isinstance(found, OptimizerSpec) else found
        except Exception as e:
            raise ValueError(f"{where} does not load: {e}") from None
        for spec in [found] if isinstance(found, OptimizerSpec) else list(found):
            if not isinstance(spec, OptimizerSpec):
                raise ValueError(f"{where} gave {spec!r}, not an OptimizerSpec")
            if spec.name in _REGISTRY:
                raise ValueError(f"{where} registers {spec.name!r}, a name already taken: rename it in its package")
            register(spec if spec.external else _as_plugin(spec, entry))
            _loaded.append(spec.name)
    return _loaded[1:]


def _as_plugin(spec: OptimizerSpec, entry: metadata.EntryPoint) -> OptimizerSpec:
    """`spec` marked as coming from the package that declares `entry`."""
    from dataclasses import replace

    package = entry.dist.name if entry.dist is not None else entry.value.partition(":")[0].partition(".")[0]
    return replace(spec, source=f"plug-in {package}")


def code_fingerprint(options: Mapping[str, Any]) -> dict[str, Any] | None:
    """What the code of a config's optimizer is, when it is not llbbench's own: the class, its package and version,
    and the SHA-256 of its module's source; None for llbbench's own optimizers."""
    if options.get("_target_") is not None:
        factory: Any = resolve_target(options["_target_"])
    else:
        load_plugins()
        spec = _REGISTRY.get(str(options.get("name")))
        if spec is None or not spec.external:
            return None
        factory = spec.factory
    factory = getattr(factory, "func", factory)  # a functools.partial: the function it calls
    module = inspect.getmodule(factory)
    module_name = module.__name__ if module is not None else str(getattr(factory, "__module__", ""))
    package = _distribution(module_name.partition(".")[0])
    return {
        "class": f"{module_name}.{getattr(factory, '__qualname__', repr(factory))}",
        "package": package,
        "version": _version(package),
        "source_sha256": _source_hash(module),
    }


@cache
def _distribution(top_module: str) -> str:
    """The installed distribution that provides `top_module` (its own name when none does, e.g. a loose file)."""
    return (metadata.packages_distributions().get(top_module) or [top_module])[0]


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _source_hash(module: Any) -> str | None:
    try:
        path = inspect.getsourcefile(module)
    except TypeError:
        return None
    if path is None:
        return None
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()
