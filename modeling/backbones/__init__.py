"""Backbone trunks (no pooling, no classifier) by name: ``build_backbone(name, last_stride)``.

Every trunk maps (N, 3, H, W) to (N, out_channels, h, w), exposes ``out_channels``,
``output_size((H, W)) -> (h, w)`` and ``stages()`` (consecutive callables whose composition is
the forward; the units of activation checkpointing).

The trunks are the entries of :data:`BACKBONES` (MODEL.NAME -> factory), registered next to
their definitions: the plain ResNets in ``resnet.py``, ResNet-50-IBN-a in ``resnet_ibn_a.py``,
the SE family in ``senet.py``. A new backbone is a factory plus one line,
``BACKBONES.register("name", factory)`` (README, "How to add a backbone, dataset or sampler").
"""

from __future__ import annotations

from torch import nn

from utils.errors import UserError

from .registry import BACKBONES
from .resnet import RESNET_LAYOUTS, ResNet
from .resnet_ibn_a import resnet50_ibn_a
from .senet import SENet

# The built-in backbones, in registration order (BACKBONES also holds those registered later).
BACKBONE_NAMES = BACKBONES.names()

# Backbones whose ImageNet weights torchvision's weights API provides (same key names).
TORCHVISION_BACKBONES = tuple(RESNET_LAYOUTS)


def build_backbone(name: str, last_stride: int = 1, stem_relu: bool = False) -> nn.Module:
    """Build a randomly initialised trunk.

    Args:
        name: a name registered in :data:`BACKBONES` (MODEL.NAME).
        last_stride: stride of the last stage (MODEL.LAST_STRIDE), 1 or 2.
        stem_relu: MODEL.STEM_RELU, for the plain ResNets only: False is the original's stem
            without a ReLU, True torchvision's. IBN-a and the SE family always have one.

    Raises:
        UserError: unknown name or bad stride.
    """
    if last_stride not in (1, 2):
        raise UserError(f"MODEL.LAST_STRIDE must be 1 or 2, got {last_stride!r}.")
    return BACKBONES.get(name)(last_stride=last_stride, stem_relu=stem_relu)


__all__ = ["BACKBONES", "BACKBONE_NAMES", "TORCHVISION_BACKBONES", "ResNet", "SENet",
           "build_backbone", "resnet50_ibn_a"]
