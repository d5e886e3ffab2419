"""What the optimizers share: argument checks (one clear `ValueError` where a bad value enters), and moving their
optimizer-wide state to their parameters' device after a load."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch


def check_values(owner: str, checks: Iterable[tuple[str, Any, bool, str]]) -> None:
    """Raise for the first (name, value, ok, rule) whose `ok` is false: "OWNER: name=value must be rule"."""
    for name, value, ok, rule in checks:
        if not ok:
            raise ValueError(f"{owner}: {name}={value!r} must be {rule}")


def to_device(value: Any, device: torch.device) -> Any:
    """`value` (tensors, possibly in lists, tuples or dicts) with every floating-point tensor on `device`.

    `Optimizer.load_state_dict` moves the state of each parameter but leaves optimizer-wide state (kept under a
    string key) where it was saved: after a resume on a GPU it would stay on the CPU. Integer tensors (a random
    generator's state, which must stay a CPU byte tensor) are left as they are."""
    if isinstance(value, torch.Tensor):
        return value.to(device) if value.is_floating_point() else value
    if isinstance(value, dict):
        return {key: to_device(item, device) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_device(item, device) for item in value)
    return value


def load_shared_state(optimizer: torch.optim.Optimizer, state_dict: dict[str, Any], key: str) -> None:
    """`torch.optim.Optimizer.load_state_dict`, then the optimizer-wide state under `key` onto the parameters'
    device."""
    torch.optim.Optimizer.load_state_dict(optimizer, state_dict)
    if key in optimizer.state:
        device = optimizer.param_groups[0]["params"][0].device
        optimizer.state[key] = to_device(optimizer.state[key], device)
