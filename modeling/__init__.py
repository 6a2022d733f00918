"""Model package: ``build_model(cfg, num_classes, attr_lens)`` and weight loading."""

from .backbones import BACKBONE_NAMES, build_backbone
from .build import build_model, fold_batch_norms, resolve_channels_last
from .video_baseline import VideoBaseline
from .weights import load_backbone_weights, load_model_weights

__all__ = ["build_model", "fold_batch_norms", "resolve_channels_last", "VideoBaseline",
           "build_backbone", "BACKBONE_NAMES", "load_backbone_weights", "load_model_weights"]
