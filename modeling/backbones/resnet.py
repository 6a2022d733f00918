"""ResNet-18/34/50/101/152 with a configurable last stride.

Parameter names equal torchvision's (``conv1``, ``bn1``, ``layer1..4``, ``downsample.0/1``), so
torchvision's ImageNet files load directly; there is no classifier (``fc`` is skipped on load).

Reference: He et al., "Deep Residual Learning for Image Recognition", CVPR 2016.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import nn

from .registry import BACKBONES


def conv_output_size(n: int, kernel: int, stride: int, padding: int,
                     ceil_mode: bool = False) -> int:
    """Output length of a convolution/pooling along one dimension (PyTorch's formula).

    Raises:
        ValueError: the input is too small for the kernel.
    """
    span = n + 2 * padding - kernel
    if span < 0:
        raise ValueError(f"a length-{n} input is too small for a kernel of {kernel}")
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= n + padding:  # last window would start in padding
        out -= 1
    return out


class BasicBlock(nn.Module):
    """Two 3x3 convolutions (ResNet-18/34)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 - 3x3 (strided) - 1x1 bottleneck (ResNet-50/101/152, torchvision's v1.5 layout)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1: nn.Module = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """ResNet trunk without pooling and classifier: (N, 3, H, W) -> (N, out_channels, h, w).

    Args:
        block: ``BasicBlock`` or ``Bottleneck``.
        layers: number of blocks of the four stages.
        last_stride: stride of the last stage (1 keeps a map of H/16 x W/16).
        stem_relu: ReLU between the stem's ``bn1`` and max-pool (torchvision's architecture).
            The original's plain ResNets (the paper's resnet50 included) have none.
    """

    def __init__(self, block: type[BasicBlock] | type[Bottleneck], layers: list[int],
                 last_stride: int = 2, stem_relu: bool = False) -> None:
        super().__init__()
        self.stem_relu = stem_relu
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._make_layer(0, block, 64, layers[0], 1)
        self.layer2 = self._make_layer(1, block, 128, layers[1], 2)
        self.layer3 = self._make_layer(2, block, 256, layers[2], 2)
        self.layer4 = self._make_layer(3, block, 512, layers[3], last_stride)
        self.last_stride = last_stride
        self.out_channels = 512 * block.expansion
        self.reset_parameters()

    def _make_block(self, stage: int, block: type, inplanes: int, planes: int, stride: int,
                    downsample: nn.Module | None) -> nn.Module:
        """One residual block of stage ``stage`` (0-based); subclasses change the block type."""
        return block(inplanes, planes, stride, downsample)

    def _make_layer(self, stage: int, block: type, planes: int, blocks: int,
                    stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [self._make_block(stage, block, self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [self._make_block(stage, block, self.inplanes, planes, 1, None)
                   for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def reset_parameters(self) -> None:
        """Random initialisation: Kaiming (fan_out) convolutions, normalisation weight 1 bias 0."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)) and m.affine:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def output_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """(h, w) of the output map for (H, W) input frames."""

        def one(n: int) -> int:
            n = conv_output_size(n, 7, 2, 3)                      # conv1
            n = conv_output_size(n, 3, 2, 1)                      # maxpool
            for stride in (1, 2, 2, self.last_stride):            # strided 3x3 of each stage
                n = conv_output_size(n, 3, stride, 1)
            return n

        return one(size[0]), one(size[1])

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn1(self.conv1(x))
        return self.maxpool(self.relu(x) if self.stem_relu else x)

    def stages(self) -> list[Callable[[torch.Tensor], torch.Tensor]]:
        """The trunk as consecutive stages (units of activation checkpointing)."""
        return [self._stem, self.layer1, self.layer2, self.layer3, self.layer4]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) -> (N, out_channels, h, w)."""
        for stage in self.stages():
            x = stage(x)
        return x


RESNET_LAYOUTS: dict[str, tuple[type, list[int]]] = {
    "resnet18": (BasicBlock, [2, 2, 2, 2]),
    "resnet34": (BasicBlock, [3, 4, 6, 3]),
    "resnet50": (Bottleneck, [3, 4, 6, 3]),
    "resnet101": (Bottleneck, [3, 4, 23, 3]),
    "resnet152": (Bottleneck, [3, 8, 36, 3]),
}


def resnet(name: str, last_stride: int = 2, stem_relu: bool = False) -> ResNet:
    """A ResNet trunk by name ("resnet18" ... "resnet152").

    ``stem_relu`` False (the default) is the original's stem, conv1 -> bn1 -> max-pool;
    True is torchvision's, with a ReLU before the max-pool (MODEL.STEM_RELU).
    """
    block, layers = RESNET_LAYOUTS[name]
    return ResNet(block, layers, last_stride, stem_relu)


for _name in RESNET_LAYOUTS:     # MODEL.NAME resnet18 ... resnet152
    BACKBONES.register(_name, partial(resnet, _name))
