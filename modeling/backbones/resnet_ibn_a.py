"""ResNet-50-IBN-a: the first BN of each bottleneck in stages 1-3 becomes half IN, half BN.

Parameter names follow the IBN-Net release (``layer1.0.bn1.IN.weight``, ``layer1.0.bn1.BN.*``),
so its ImageNet file (``r50_ibn_a.pth``) loads.

Reference: Pan et al., "Two at Once: Enhancing Learning and Generalization Capacities via
IBN-Net", ECCV 2018.
"""

from __future__ import annotations

import torch
from torch import nn

from .registry import BACKBONES
from .resnet import Bottleneck, ResNet


class IBN(nn.Module):
    """Instance norm (affine) on the first ``int(planes * ratio)`` channels, batch norm on the rest.

    Args:
        planes: number of channels.
        ratio: fraction of channels that get instance normalisation.
    """

    def __init__(self, planes: int, ratio: float = 0.5) -> None:
        super().__init__()
        self.half = int(planes * ratio)
        self.IN = nn.InstanceNorm2d(self.half, affine=True)
        self.BN = nn.BatchNorm2d(planes - self.half)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first, rest = torch.split(x, [self.half, x.shape[1] - self.half], dim=1)
        return torch.cat([self.IN(first.contiguous()), self.BN(rest.contiguous())], dim=1)


class ResNetIBNa(ResNet):
    """ResNet with IBN-a bottlenecks in stages 1-3 (stage 4 keeps plain BN)."""

    def _make_block(self, stage: int, block: type, inplanes: int, planes: int, stride: int,
                    downsample: nn.Module | None) -> nn.Module:
        blk = block(inplanes, planes, stride, downsample)
        if stage < 3:
            blk.bn1 = IBN(planes)  # replaces the registered bn1 in place (same key position)
        return blk


@BACKBONES.register("resnet50_ibn_a")
def resnet50_ibn_a(last_stride: int = 2, stem_relu: bool | None = None) -> ResNetIBNa:
    """ResNet-50-IBN-a trunk. ``stem_relu`` (MODEL.STEM_RELU) is ignored: IBN-a has the ReLU."""
    return ResNetIBNa(Bottleneck, [3, 4, 6, 3], last_stride, stem_relu=True)  # IBN-a keeps it
