"""Model package: ``build_model(cfg, num_classes, attr_lens)`` and weight loading.

Registries: :data:`BACKBONES` (MODEL.NAME), :data:`FUSION_METHODS` (MODEL.FUSION_METHOD),
:data:`NECKS` (MODEL.NECK).
"""

from .backbones import BACKBONE_NAMES, BACKBONES, build_backbone
from .build import build_model, fold_batch_norms, resolve_channels_last
from .video_baseline import FUSION_METHODS, NECKS, Fusion, Neck, VideoBaseline
from .weights import load_backbone_weights, load_model_weights

__all__ = ["build_model", "fold_batch_norms", "resolve_channels_last", "VideoBaseline",
           "build_backbone", "BACKBONE_NAMES", "BACKBONES", "FUSION_METHODS", "NECKS", "Fusion",
           "Neck", "load_backbone_weights", "load_model_weights"]
