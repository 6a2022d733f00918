"""The backbone registry: MODEL.NAME -> the factory of a randomly initialised trunk.

A factory is called ``factory(last_stride=..., stem_relu=...)`` (MODEL.LAST_STRIDE, 1 or 2;
MODEL.STEM_RELU, which a trunk without that choice ignores) and returns an ``nn.Module`` that
maps (N, 3, H, W) to (N, out_channels, h, w) and has ``out_channels``,
``output_size((H, W)) -> (h, w)`` and ``stages()`` (see :mod:`modeling.backbones`). Each
backbone module registers its trunks next to their definitions.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from utils.registry import Registry

__all__ = ["BACKBONES", "BackboneFactory"]

BackboneFactory = Callable[..., nn.Module]

BACKBONES: Registry[BackboneFactory] = Registry("MODEL.NAME", "backbone")
