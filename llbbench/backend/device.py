"""The one place a config's `device` becomes a torch device."""

from __future__ import annotations

import torch


def resolve_device(name: str) -> torch.device:
    """`auto` is CUDA when present, else the CPU; anything else must name a usable torch device (`ValueError`)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"device={name!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name!r} asked for, but CUDA is not available here; use auto or cpu")
    return device


def device_of(name: str) -> torch.device:
    """The device a run asking for `name` gets, for its identity, without asking this machine: `cuda` stays CUDA
    where there is none (a job submitted from a login node gets its identity there), and a name that is not a
    device is the CPU (the run itself refuses it)."""
    if name == "auto":
        return resolve_device(name)
    try:
        return torch.device(name)
    except RuntimeError:
        return torch.device("cpu")
