"""A one-hidden-layer perceptron: Fig. 8's network, whose zero weights are a saddle point of the loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .common import check_width, scaled

SIDE = 32  # inputs of another size are average-pooled to SIDE × SIDE first


class MLP(nn.Module):
    """(pool to 32×32 →) flatten → linear to `hidden` (times `width`) units → ReLU → linear to the classes.

    At zero weights the gradients of both weight matrices vanish (each is multiplied by the other), so a start
    next to zero sits next to a saddle point of the loss."""

    def __init__(self, num_classes: int, in_channels: int = 3, hidden: int = 256, width: float = 1.0) -> None:
        super().__init__()
        check_width(width)
        units = scaled(hidden, width)
        self.pool = nn.AdaptiveAvgPool2d(SIDE)  # a module, so that Path-SGD's κ sees its weights (docs/baselines.md)
        self.hidden = nn.Linear(in_channels * SIDE * SIDE, units)
        self.out = nn.Linear(units, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (SIDE, SIDE):
            x = self.pool(x)
        return self.out(F.relu(self.hidden(x.flatten(1))))
