"""What the optimizers share, public for the harness, scripts and tests: argument checks (one clear `ValueError`
where a bad value enters), finding and moving their optimizer-wide state (onto their parameters' device after a
load), and averaging tensors over torch.distributed's workers."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.distributed as dist


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


def tensors_in(value: Any) -> list[torch.Tensor]:
    """Every tensor in `value` (a tensor, or lists, tuples and dicts of them, nested), in order."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        return [t for item in value.values() for t in tensors_in(item)]
    if isinstance(value, (list, tuple)):
        return [t for item in value for t in tensors_in(item)]
    return []


def load_shared_state(optimizer: torch.optim.Optimizer, state_dict: dict[str, Any], key: str) -> None:
    """`torch.optim.Optimizer.load_state_dict`, then the optimizer-wide state under `key` onto the parameters'
    device."""
    torch.optim.Optimizer.load_state_dict(optimizer, state_dict)
    if key in optimizer.state:
        device = optimizer.param_groups[0]["params"][0].device
        optimizer.state[key] = to_device(optimizer.state[key], device)


def distributed() -> bool:
    """Whether the optimizer steps in one of several torch.distributed workers."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def averaged_over_workers(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """Each tensor's mean over the workers (new tensors, in one all-reduce: on the CPU under gloo)."""
    flat = torch.cat([t.detach().reshape(-1) for t in tensors])
    moved = flat.cpu() if dist.get_backend() == "gloo" else flat
    dist.all_reduce(moved, op=dist.ReduceOp.SUM)
    flat = moved.to(flat.device) / dist.get_world_size()
    return [piece.view_as(t) for piece, t in zip(flat.split([t.numel() for t in tensors]), tensors, strict=True)]
