"""VGG-16 (Simonyan & Zisserman, 2015), configuration D, with optional batch norm; and a 32×32 form."""

from __future__ import annotations

from torch import nn

from .common import check_width, scaled
from .init import kaiming_fan_out, reference

CONFIG_D = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class VGG16(nn.Module):
    """ImageNet form: torchvision's vgg16 / vgg16_bn. CIFAR form: the same 13 convolutions (32 → 1 after five
    pools) and a classifier of two 512-wide hidden layers, as is usual for VGG on CIFAR-10."""

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        width: float = 1.0,
        dropout: float = 0.5,
        batch_norm: bool = False,
        cifar: bool = False,
    ) -> None:
        super().__init__()
        check_width(width)
        layers: list[nn.Module] = []
        channels = in_channels
        for item in CONFIG_D:
            if item == "M":
                layers.append(nn.MaxPool2d(2, stride=2))
                continue
            out = scaled(item, width)
            layers.append(nn.Conv2d(channels, out, 3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out))
            layers.append(nn.ReLU(inplace=True))
            channels = out
        self.features = nn.Sequential(*layers)
        spatial, hidden = (1, scaled(512, width)) if cifar else (7, scaled(4096, width))
        self.avgpool = nn.AdaptiveAvgPool2d(spatial)
        self.classifier = nn.Sequential(
            nn.Linear(channels * spatial * spatial, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )
        # torchvision's: Kaiming fan-out convs, N(0, 0.01²) linear layers, biases 0, BatchNorm 1 and 0
        reference(self, conv=kaiming_fan_out, linear=lambda weight: nn.init.normal_(weight, 0.0, 0.01))

    def forward(self, x):
        return self.classifier(self.avgpool(self.features(x)).flatten(1))
