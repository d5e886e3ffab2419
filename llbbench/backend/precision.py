"""Numeric precision and memory layout of a run (`train.precision`, `train.channels_last`).

- `fp32`: float32 throughout, TF32 off; `tf32`: float32 weights with TF32 matmuls and convolutions (CUDA);
  `bf16`: the forward pass and the loss under bfloat16 autocast (weights, gradients and every optimizer step stay
  float32; on the CPU too); `auto`: bf16 on a CUDA device that supports it, else fp32.
- `channels_last` (null: on CUDA): the network and its batches in NHWC layout, which cuDNN runs faster (refused on
  the CPU, where PyTorch's kernels crash on narrow networks).

The resolved values are what a run records and what its identity holds; fp32 and channels_last off, the only
behaviour of runs made before these options existed, are left out of the identity so that such runs keep their
directories.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

PRECISIONS = ("auto", "fp32", "tf32", "bf16")


def resolve(precision: str, device: torch.device) -> str:
    """`auto` made concrete for `device`; the others as they are."""
    if precision not in PRECISIONS:
        raise ValueError(f"train.precision={precision!r} is not one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"


def resolve_channels_last(option: bool | None, device: torch.device) -> bool:
    """`train.channels_last`: as set, or (null) on CUDA."""
    return device.type == "cuda" if option is None else bool(option)


def check_layout(channels_last: bool, device: torch.device) -> None:
    """channels_last is refused on the CPU: there PyTorch's backward pass of narrow NHWC convolutions (the
    width-reduced networks of the CPU scale) corrupts memory and kills the process."""
    if channels_last and device.type == "cpu":
        raise ValueError(
            "train.channels_last=true on the CPU: PyTorch's CPU backward of narrow channels-last convolutions "
            "crashes (seen at model.width 0.125 and below); leave train.channels_last null (on CUDA only) or false"
        )


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The context the forward pass and the loss run in."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def configure(precision: str, device: torch.device) -> None:
    """Backend switches of a run on `device`: TF32 only for `tf32`, cuDNN autotuning on CUDA."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
        torch.backends.cudnn.allow_tf32 = precision == "tf32"
        torch.backends.cudnn.benchmark = True


def identity_values(train: dict[str, Any], device: torch.device) -> None:
    """In a run's identity (a plain dict's `train`), the resolved precision, layout and compilation; dropped at fp32
    and off."""
    value = resolve(str(train.get("precision", "fp32")), device)
    if value == "fp32":
        train.pop("precision", None)
    else:
        train["precision"] = value
    if resolve_channels_last(train.get("channels_last"), device):
        train["channels_last"] = True
    else:
        train.pop("channels_last", None)
    if not train.get("compile"):  # eager, as every run was before the option: the same identity
        train.pop("compile", None)
