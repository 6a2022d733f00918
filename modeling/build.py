"""``build_model(cfg, num_classes, attr_lens)``: the config adapter of ``VideoBaseline``."""

from __future__ import annotations

import copy
import logging

import torch
import torch.nn as nn
from torch.fx.experimental.optimization import fuse
from torch.nn.utils.fusion import fuse_conv_bn_eval
from yacs.config import CfgNode

from utils.errors import UserError

from .video_baseline import VideoBaseline
from .weights import load_backbone_weights, load_model_weights

logger = logging.getLogger("reid.model")

# MODEL.CHANNELS_LAST "auto": on where channels_last is the faster layout (the same outputs
# either way). CUDA: the layout of the tensor-core convolutions (mixed precision, TF32). CPU
# (oneDNN, 2-core Xeon): faster for frames of 256x128 and more (the paper model's training step
# 1.2x, extraction with the folded BatchNorms 1.9x; ResNet-18 1.15x), about equal at 128x64,
# slower for small frames (ResNet-18 at 64x32: 0.8x, the CPU demo). Other devices: off.
CHANNELS_LAST_AUTO = {"cuda": 0, "cpu": 256 * 128}   # device type -> least H * W of a frame


def resolve_channels_last(setting: bool | str, device: torch.device | str,
                          input_size: tuple[int, int] = (256, 128)) -> bool:
    """MODEL.CHANNELS_LAST for a device: True/False as given, "auto" per :data:`CHANNELS_LAST_AUTO`.

    Args:
        setting: the MODEL.CHANNELS_LAST value (True, False or "auto").
        device: the device the model runs on.
        input_size: (H, W) of the frames (INPUT.SIZE_TRAIN).
    """
    if setting == "auto":
        least = CHANNELS_LAST_AUTO.get(torch.device(device).type)
        return least is not None and int(input_size[0]) * int(input_size[1]) >= least
    return bool(setting)


def fold_batch_norms(model: VideoBaseline) -> VideoBaseline:
    """An eval-mode copy of ``model`` whose backbone has each BatchNorm folded into the
    convolution before it (``torch.fx``: a conv -> bn pair whose conv feeds nothing else), and
    so have the attribute streams (their ``conv`` -> ``bn``).

    In eval mode a BatchNorm is a fixed per-channel affine map, so folding it into the
    convolution's weight and bias computes the same features (to float rounding) without the
    normalisation passes: extraction about 10% faster on a CPU. For inference only (the copy's
    backbone is a ``torch.fx.GraphModule``, without gradient checkpointing); ``model`` is
    left as it is.
    """
    folded = copy.deepcopy(model).eval()
    folded.base = fuse(folded.base, inplace=True)
    for name in ("multi_attr_recoger1", "multi_attr_recoger2"):     # the attribute streams
        stream = getattr(folded, name, None)
        if isinstance(getattr(stream, "bn", None), nn.BatchNorm2d):
            stream.conv = fuse_conv_bn_eval(stream.conv, stream.bn)
            stream.bn = nn.Identity()
    if folded.channels_last:
        folded.to(memory_format=torch.channels_last)
    return folded


def build_model(cfg: CfgNode, num_classes: int, attr_lens: list[list[int]] | None,
                load_pretrained: bool | None = None,
                device: torch.device | str | None = None) -> VideoBaseline:
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
        device: the device the model will run on (it is not moved there): decides
            MODEL.CHANNELS_LAST "auto" (:func:`resolve_channels_last`). None: MODEL.DEVICE.

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
        channels_last=resolve_channels_last(cfg.MODEL.CHANNELS_LAST,
                                            device if device is not None else cfg.MODEL.DEVICE,
                                            cfg.INPUT.SIZE_TRAIN),
        stem_relu=cfg.MODEL.STEM_RELU,
    )
    if load_pretrained is None:
        load_pretrained = not cfg.EVALUATE_ONLY
    choice, path = cfg.MODEL.PRETRAIN_CHOICE, cfg.MODEL.PRETRAIN_PATH
    if load_pretrained and choice == "imagenet":
        load_backbone_weights(model.base, cfg.MODEL.NAME, path, cfg.MODEL.PRETRAIN_PARTIAL)
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
