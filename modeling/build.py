"""``build_model(cfg, num_classes, attr_lens)``: the config adapter of ``VideoBaseline``."""

from __future__ import annotations

import logging

from yacs.config import CfgNode

from utils.errors import UserError

from .video_baseline import VideoBaseline
from .weights import load_backbone_weights, load_model_weights

logger = logging.getLogger("reid.model")


def build_model(cfg: CfgNode, num_classes: int, attr_lens: list[list[int]] | None,
                load_pretrained: bool | None = None) -> VideoBaseline:
    """Build the model from the config and load MODEL.PRETRAIN_CHOICE weights.

    Args:
        cfg: the run's config (MODEL.*, INPUT.SIZE_TRAIN, DATASETS.ATTRIBUTE_LOSS,
            TEST.NECK_FEAT, ATTR_RECOG_ON).
        num_classes: number of training identities.
        attr_lens: class counts of the two attribute groups (dataset.attr_lens), or None.
        load_pretrained: load the PRETRAIN_CHOICE weights ("imagenet": backbone from
            MODEL.PRETRAIN_PATH or torchvision; "self": whole model from MODEL.PRETRAIN_PATH;
            "none": nothing). None means "unless EVALUATE_ONLY" (the evaluated checkpoint
            replaces every weight anyway).

    Raises:
        UserError: bad values, or weights that cannot be loaded (message says how to fix).
    """
    if cfg.MODEL.ARCH != "video_baseline":
        raise UserError(f"MODEL.ARCH '{cfg.MODEL.ARCH}' is unknown; the only one is "
                        "'video_baseline'.")
    model = VideoBaseline(
        num_classes,
        backbone=cfg.MODEL.NAME,
        last_stride=cfg.MODEL.LAST_STRIDE,
        fusion_method=cfg.MODEL.FUSION_METHOD,
        neck=cfg.MODEL.NECK,
        neck_feat=cfg.TEST.NECK_FEAT,
        attr_lens=attr_lens if cfg.ATTR_RECOG_ON else None,
        attribute_loss=cfg.DATASETS.ATTRIBUTE_LOSS,
        input_size=tuple(cfg.INPUT.SIZE_TRAIN),
        grad_checkpoint=cfg.MODEL.GRAD_CHECKPOINT,
        channels_last=cfg.MODEL.CHANNELS_LAST,
        stem_relu=cfg.MODEL.STEM_RELU,
    )
    if load_pretrained is None:
        load_pretrained = not cfg.EVALUATE_ONLY
    choice, path = cfg.MODEL.PRETRAIN_CHOICE, cfg.MODEL.PRETRAIN_PATH
    if load_pretrained and choice == "imagenet":
        load_backbone_weights(model.base, cfg.MODEL.NAME, path)
    elif load_pretrained and choice == "self":
        if not path:
            raise UserError("MODEL.PRETRAIN_CHOICE self loads a whole-model checkpoint from "
                            "MODEL.PRETRAIN_PATH, which is empty: set it to the file.")
        load_model_weights(model, path)
    elif choice not in ("imagenet", "self", "none"):
        raise UserError(f"MODEL.PRETRAIN_CHOICE '{choice}' is not one of imagenet, self, none.")
    logger.info("Model: %s backbone, %s; %d identities, %.2f M parameters.", cfg.MODEL.NAME,
                model.extra_repr(), num_classes,
                sum(p.numel() for p in model.parameters()) / 1e6)
    return model
