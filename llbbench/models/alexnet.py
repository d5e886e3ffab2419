"""AlexNet (Krizhevsky et al., 2012) in torchvision's single-tower form, and a small-input form for 32×32 images."""

from __future__ import annotations

from torch import nn

from .common import check_width, scaled


class AlexNet(nn.Module):
    """ImageNet form: torchvision's AlexNet. CIFAR form: 3×3/5×5 convolutions at stride 1 with three 2×2
    max-pools (32 → 4), the same channel counts, and a classifier over the 4×4×256 features. Its initialization
    is PyTorch's layer default, as in torchvision (which sets none of its own). `batch_norm` adds a BatchNorm
    after every convolution (not in the original; the CPU scale uses it, docs/scales.md)."""

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
        c1, c2, c3, c4, hidden = (scaled(c, width) for c in (64, 192, 384, 256, 4096))
        if cifar:
            first, pool, spatial = nn.Conv2d(in_channels, c1, 3, padding=1), nn.MaxPool2d(2), 4
        else:
            first, pool, spatial = nn.Conv2d(in_channels, c1, 11, stride=4, padding=2), nn.MaxPool2d(3, stride=2), 6

        def block(conv: nn.Conv2d) -> list[nn.Module]:  # conv, BatchNorm when asked, ReLU
            return [conv, *([nn.BatchNorm2d(conv.out_channels)] if batch_norm else []), nn.ReLU(inplace=True)]

        self.features = nn.Sequential(
            *block(first),
            pool,
            *block(nn.Conv2d(c1, c2, 5, padding=2)),
            pool,
            *block(nn.Conv2d(c2, c3, 3, padding=1)),
            *block(nn.Conv2d(c3, c4, 3, padding=1)),
            *block(nn.Conv2d(c4, c4, 3, padding=1)),
            pool,
        )
        self.avgpool = nn.AdaptiveAvgPool2d(spatial)
        self.classifier = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(c4 * spatial * spatial, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.avgpool(self.features(x)).flatten(1))
