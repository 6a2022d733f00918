"""Backbone trunks (no pooling, no classifier) by name: ``build_backbone(name, last_stride)``.

Every trunk maps (N, 3, H, W) to (N, out_channels, h, w), exposes ``out_channels``,
``output_size((H, W)) -> (h, w)`` and ``stages()`` (consecutive callables whose composition is
the forward; the units of activation checkpointing).
"""

from __future__ import annotations

from torch import nn

from utils.errors import UserError

from .resnet import RESNET_LAYOUTS, ResNet, resnet
from .resnet_ibn_a import resnet50_ibn_a
from .senet import SENET_LAYOUTS, SENet, senet

BACKBONE_NAMES = (*RESNET_LAYOUTS, *SENET_LAYOUTS, "resnet50_ibn_a")

# Backbones whose ImageNet weights torchvision's weights API provides (same key names).
TORCHVISION_BACKBONES = tuple(RESNET_LAYOUTS)


def build_backbone(name: str, last_stride: int = 1, stem_relu: bool = False) -> nn.Module:
    """Build a randomly initialised trunk.

    Args:
        name: one of ``BACKBONE_NAMES`` (MODEL.NAME).
        last_stride: stride of the last stage (MODEL.LAST_STRIDE), 1 or 2.
        stem_relu: MODEL.STEM_RELU, for the plain ResNets only: False is the original's stem
            without a ReLU, True torchvision's. IBN-a and the SE family always have one.

    Raises:
        UserError: unknown name or bad stride.
    """
    if last_stride not in (1, 2):
        raise UserError(f"MODEL.LAST_STRIDE must be 1 or 2, got {last_stride!r}.")
    if name in RESNET_LAYOUTS:
        return resnet(name, last_stride, stem_relu)
    if name in SENET_LAYOUTS:
        return senet(name, last_stride)
    if name == "resnet50_ibn_a":
        return resnet50_ibn_a(last_stride)
    raise UserError(f"Unknown backbone MODEL.NAME '{name}'; choose one of "
                    f"{', '.join(BACKBONE_NAMES)}.")


__all__ = ["build_backbone", "BACKBONE_NAMES", "TORCHVISION_BACKBONES", "ResNet", "SENet"]
