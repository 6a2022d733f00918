"""SE-ResNet-50/101/152, SE-ResNeXt-50/101 (32x4d) and SENet-154 with a configurable last stride.

Parameter names follow the widely used ``pretrainedmodels`` release (``layer0.conv1``,
``layerN.i.se_module.fc1/fc2``, ``downsample.0/1``), so its ImageNet files load; the
classifier ``last_linear`` is not built (skipped on load).

Reference: Hu et al., "Squeeze-and-Excitation Networks", CVPR 2018.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from functools import partial

import torch
from torch import nn

from .registry import BACKBONES
from .resnet import conv_output_size


class SEModule(nn.Module):
    """Squeeze-and-excitation: channel gates from globally pooled features."""

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.sigmoid(self.fc2(self.relu(self.fc1(self.avg_pool(x)))))  # (N, C, 1, 1)
        return x * gate


class _SEBlockBase(nn.Module):
    """Shared forward of the three SE bottleneck variants (layers set by subclasses)."""

    expansion = 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(self.se_module(out) + identity)


class SEBottleneck(_SEBlockBase):
    """SENet-154 bottleneck: widths 2p -> 4p (grouped 3x3), stride in the 3x3 convolution."""

    def __init__(self, inplanes: int, planes: int, groups: int, reduction: int, stride: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes * 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes * 2)
        self.conv2 = nn.Conv2d(planes * 2, planes * 4, 3, stride=stride, padding=1,
                               groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(planes * 4)
        self.conv3 = nn.Conv2d(planes * 4, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.se_module = SEModule(planes * 4, reduction)
        self.downsample = downsample


class SEResNetBottleneck(_SEBlockBase):
    """SE-ResNet bottleneck: stride in the first 1x1 convolution (Caffe layout)."""

    def __init__(self, inplanes: int, planes: int, groups: int, reduction: int, stride: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.se_module = SEModule(planes * 4, reduction)
        self.downsample = downsample


class SEResNeXtBottleneck(_SEBlockBase):
    """SE-ResNeXt bottleneck (cardinality ``groups``, base width 4), stride in the 3x3 conv."""

    def __init__(self, inplanes: int, planes: int, groups: int, reduction: int, stride: int = 1,
                 downsample: nn.Module | None = None, base_width: int = 4) -> None:
        super().__init__()
        width = math.floor(planes * (base_width / 64)) * groups
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, groups=groups,
                               bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.se_module = SEModule(planes * 4, reduction)
        self.downsample = downsample


class SENet(nn.Module):
    """SENet trunk without pooling and classifier: (N, 3, H, W) -> (N, 2048, h, w).

    Args:
        block: one of the SE bottleneck classes.
        layers: number of blocks of the four stages.
        groups: cardinality of the 3x3 convolutions.
        reduction: squeeze-and-excitation reduction ratio.
        inplanes: channels after the stem (128 for SENet-154, else 64).
        input_3x3: stem of three 3x3 convolutions (SENet-154) instead of one 7x7.
        downsample_kernel_size: kernel of the shortcut convolution in stages 2-4.
        downsample_padding: its padding.
        last_stride: stride of the last stage.
    """

    def __init__(self, block: type[_SEBlockBase], layers: list[int], groups: int,
                 reduction: int, inplanes: int = 64, input_3x3: bool = False,
                 downsample_kernel_size: int = 1, downsample_padding: int = 0,
                 last_stride: int = 2) -> None:
        super().__init__()
        self.inplanes = inplanes
        self.input_3x3 = input_3x3
        self.last_stride = last_stride
        if input_3x3:
            stem = [
                ("conv1", nn.Conv2d(3, 64, 3, stride=2, padding=1, bias=False)),
                ("bn1", nn.BatchNorm2d(64)),
                ("relu1", nn.ReLU(inplace=True)),
                ("conv2", nn.Conv2d(64, 64, 3, stride=1, padding=1, bias=False)),
                ("bn2", nn.BatchNorm2d(64)),
                ("relu2", nn.ReLU(inplace=True)),
                ("conv3", nn.Conv2d(64, inplanes, 3, stride=1, padding=1, bias=False)),
                ("bn3", nn.BatchNorm2d(inplanes)),
                ("relu3", nn.ReLU(inplace=True)),
            ]
        else:
            stem = [
                ("conv1", nn.Conv2d(3, inplanes, 7, stride=2, padding=3, bias=False)),
                ("bn1", nn.BatchNorm2d(inplanes)),
                ("relu1", nn.ReLU(inplace=True)),
            ]
        stem.append(("pool", nn.MaxPool2d(3, stride=2, ceil_mode=True)))
        self.layer0 = nn.Sequential(OrderedDict(stem))
        common = {"groups": groups, "reduction": reduction}
        self.layer1 = self._make_layer(block, 64, layers[0], 1, 1, 0, common)
        self.layer2 = self._make_layer(block, 128, layers[1], 2, downsample_kernel_size,
                                       downsample_padding, common)
        self.layer3 = self._make_layer(block, 256, layers[2], 2, downsample_kernel_size,
                                       downsample_padding, common)
        self.layer4 = self._make_layer(block, 512, layers[3], last_stride,
                                       downsample_kernel_size, downsample_padding, common)
        self.out_channels = 512 * block.expansion
        self.reset_parameters()

    def _make_layer(self, block: type[_SEBlockBase], planes: int, blocks: int, stride: int,
                    ds_kernel: int, ds_padding: int, common: dict) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, ds_kernel, stride=stride,
                          padding=ds_padding, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride=stride, downsample=downsample, **common)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, **common) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def reset_parameters(self) -> None:
        """Random initialisation: Kaiming (fan_out) convolutions, BN weight 1 bias 0."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def output_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """(h, w) of the output map for (H, W) input frames."""

        def one(n: int) -> int:
            n = conv_output_size(n, 3, 2, 1) if self.input_3x3 else conv_output_size(n, 7, 2, 3)
            n = conv_output_size(n, 3, 2, 0, ceil_mode=True)      # layer0.pool
            for stride in (1, 2, 2, self.last_stride):            # each stage's strided conv
                n = conv_output_size(n, 1, stride, 0)
            return n

        return one(size[0]), one(size[1])

    def stages(self) -> list[Callable[[torch.Tensor], torch.Tensor]]:
        """The trunk as consecutive stages (units of activation checkpointing)."""
        return [self.layer0, self.layer1, self.layer2, self.layer3, self.layer4]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) -> (N, 2048, h, w)."""
        for stage in self.stages():
            x = stage(x)
        return x


# name -> (block, layers, groups, inplanes, input_3x3, downsample kernel, downsample padding)
SENET_LAYOUTS: dict[str, tuple] = {
    "se_resnet50": (SEResNetBottleneck, [3, 4, 6, 3], 1, 64, False, 1, 0),
    "se_resnet101": (SEResNetBottleneck, [3, 4, 23, 3], 1, 64, False, 1, 0),
    "se_resnet152": (SEResNetBottleneck, [3, 8, 36, 3], 1, 64, False, 1, 0),
    "se_resnext50": (SEResNeXtBottleneck, [3, 4, 6, 3], 32, 64, False, 1, 0),
    "se_resnext101": (SEResNeXtBottleneck, [3, 4, 23, 3], 32, 64, False, 1, 0),
    "senet154": (SEBottleneck, [3, 8, 36, 3], 64, 128, True, 3, 1),
}


def senet(name: str, last_stride: int = 2, stem_relu: bool | None = None) -> SENet:
    """A SENet-family trunk by name (see ``SENET_LAYOUTS``).

    ``stem_relu`` (MODEL.STEM_RELU) is ignored: the SE family always has its stem ReLUs.
    """
    block, layers, groups, inplanes, input_3x3, ds_k, ds_p = SENET_LAYOUTS[name]
    return SENet(block, layers, groups=groups, reduction=16, inplanes=inplanes,
                 input_3x3=input_3x3, downsample_kernel_size=ds_k, downsample_padding=ds_p,
                 last_stride=last_stride)


for _name in SENET_LAYOUTS:      # MODEL.NAME se_resnet50 ... senet154
    BACKBONES.register(_name, partial(senet, _name))
