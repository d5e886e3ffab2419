"""GoogLeNet (Szegedy et al., 2015) built from torchvision's Inception blocks, without auxiliary classifiers.

The ImageNet form at width 1 is torchvision's `googlenet(aux_logits=False)` parameter for parameter (including
its 3×3 convolution in the "5×5" branch). The CIFAR form replaces the stem (7×7/2 conv, pools, 1×1 and 3×3
convs) with one 3×3 stride-1 convolution to 192 channels and drops the stem's two max-pools (32 → 16 → 8).
"""

from __future__ import annotations

from torch import nn
from torchvision.models.googlenet import BasicConv2d, Inception

from .common import check_width, scaled
from .init import reference, truncated_normal

# in-channels are derived; each row: 1×1, 3×3 reduce, 3×3, "5×5" reduce, "5×5", pool projection
STAGES = {
    "3": [(64, 96, 128, 16, 32, 32), (128, 128, 192, 32, 96, 64)],
    "4": [
        (192, 96, 208, 16, 48, 64),
        (160, 112, 224, 24, 64, 64),
        (128, 128, 256, 24, 64, 64),
        (112, 144, 288, 32, 64, 64),
        (256, 160, 320, 32, 128, 128),
    ],
    "5": [(256, 160, 320, 32, 128, 128), (384, 192, 384, 48, 128, 128)],
}


class GoogLeNet(nn.Module):
    def __init__(
        self, num_classes: int, in_channels: int = 3, width: float = 1.0, dropout: float = 0.4, cifar: bool = False
    ) -> None:
        super().__init__()
        check_width(width)
        stem = scaled(192, width)
        if cifar:
            self.stem = nn.Sequential(BasicConv2d(in_channels, stem, kernel_size=3, padding=1))
        else:
            self.stem = nn.Sequential(
                BasicConv2d(in_channels, scaled(64, width), kernel_size=7, stride=2, padding=3),
                nn.MaxPool2d(3, stride=2, ceil_mode=True),
                BasicConv2d(scaled(64, width), scaled(64, width), kernel_size=1),
                BasicConv2d(scaled(64, width), stem, kernel_size=3, padding=1),
                nn.MaxPool2d(3, stride=2, ceil_mode=True),
            )
        channels = stem
        blocks: list[nn.Module] = []
        for stage, rows in STAGES.items():
            for i, row in enumerate(rows):
                branch = [scaled(c, width) for c in row]
                blocks.append(Inception(channels, *branch))
                channels = branch[0] + branch[2] + branch[4] + branch[5]
                if i == len(rows) - 1 and stage != "5":
                    blocks.append(nn.MaxPool2d(3 if stage == "3" else 2, stride=2, ceil_mode=True))
        self.inception = nn.Sequential(*blocks)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(channels, num_classes)
        # torchvision's: convs and the classifier N(0, 0.01²) truncated at ±2, BatchNorm 1 and 0, biases as built
        reference(self, conv=truncated_normal, linear=truncated_normal, zero_bias=False)

    def forward(self, x):
        return self.fc(self.dropout(self.avgpool(self.inception(self.stem(x))).flatten(1)))
