"""ResNet-34/50/152 (He et al., 2016): torchvision's architecture, with a width multiplier and a CIFAR form.

The blocks are torchvision's own `BasicBlock` and `Bottleneck`, so the ImageNet form at width 1 is torchvision's
network parameter for parameter. The CIFAR form (32×32 inputs) replaces the 7×7 stride-2 stem and its max-pool
with one 3×3 stride-1 convolution, as in He et al.'s CIFAR experiments.
"""

from __future__ import annotations

from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from .common import check_width, scaled
from .init import kaiming_fan_out, reference

DEPTHS = {
    "resnet34": (BasicBlock, (3, 4, 6, 3)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
    "resnet152": (Bottleneck, (3, 8, 36, 3)),
}


class ResNet(nn.Module):
    def __init__(
        self,
        block: type[BasicBlock | Bottleneck],
        depths: tuple[int, ...],
        num_classes: int,
        in_channels: int = 3,
        width: float = 1.0,
        cifar: bool = False,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        check_width(width)
        planes = [scaled(c, width) for c in (64, 128, 256, 512)]
        self.inplanes = planes[0]
        if cifar:
            self.conv1 = nn.Conv2d(in_channels, planes[0], 3, stride=1, padding=1, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_channels, planes[0], 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(planes[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity() if cifar else nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._stage(block, planes[0], depths[0], stride=1)
        self.layer2 = self._stage(block, planes[1], depths[1], stride=2)
        self.layer3 = self._stage(block, planes[2], depths[2], stride=2)
        self.layer4 = self._stage(block, planes[3], depths[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(planes[3] * block.expansion, num_classes)
        reference(self, conv=kaiming_fan_out)  # torchvision's: Kaiming fan-out convs, BatchNorm 1 and 0
        if zero_init_residual:  # torchvision's option (Goyal et al., 2017): each block starts as the identity
            for module in self.modules():
                if isinstance(module, (BasicBlock, Bottleneck)):
                    nn.init.zeros_(module.bn3.weight if isinstance(module, Bottleneck) else module.bn2.weight)

    def _stage(self, block, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))


def resnet(
    name: str, num_classes: int, in_channels: int, cifar: bool, width: float = 1.0, zero_init_residual: bool = False
) -> ResNet:
    block, depths = DEPTHS[name]
    return ResNet(block, depths, num_classes, in_channels, width, cifar, zero_init_residual)
