"""Small helpers shared by the network definitions."""

from __future__ import annotations


def scaled(channels: int, width: float) -> int:
    """`channels` times the width multiplier, rounded, at least 1."""
    return max(1, round(channels * width))


def check_width(width: float) -> None:
    if not width > 0:
        raise ValueError(f"model.width={width} must be positive")
