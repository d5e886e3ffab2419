"""A small three-block CNN for tests and quick CPU runs."""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from .common import check_width, scaled


def smallcnn(num_classes: int, in_channels: int = 3, width: float = 1.0) -> nn.Sequential:
    """conv-BN-ReLU blocks of 32, 64 and 128 channels (times `width`), max-pools, global average pool, linear."""
    check_width(width)
    c1, c2, c3 = (scaled(c, width) for c in (32, 64, 128))

    def block(i: int, cin: int, cout: int) -> list[tuple[str, nn.Module]]:
        return [
            (f"conv{i}", nn.Conv2d(cin, cout, 3, padding=1, bias=False)),
            (f"bn{i}", nn.BatchNorm2d(cout)),
            (f"relu{i}", nn.ReLU(inplace=True)),
        ]

    return nn.Sequential(
        OrderedDict(
            [
                *block(1, in_channels, c1),
                ("pool1", nn.MaxPool2d(2)),
                *block(2, c1, c2),
                ("pool2", nn.MaxPool2d(2)),
                *block(3, c2, c3),
                ("pool3", nn.AdaptiveAvgPool2d(1)),
                ("flatten", nn.Flatten()),
                ("fc", nn.Linear(c3, num_classes)),
            ]
        )
    )
