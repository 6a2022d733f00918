"""``build_model(cfg, num_classes, attr_lens)``: the config adapter of ``VideoBaseline``."""

from __future__ import annotations

import copy
import logging

import torch
import torch.nn as nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_conv_bn_weights
from yacs.config import CfgNode

from config import attributes_on
from utils.errors import UserError

from .video_baseline import VideoBaseline
from .weights import load_backbone_weights, load_model_weights

logger = logging.getLogger("reid.model")

# MODEL.CHANNELS_LAST "auto": on where channels_last is the faster layout (the same outputs
# either way). CUDA: the layout of the tensor-core convolutions (mixed precision, TF32). CPU
# (oneDNN): faster for frames of 256x128 and more, about equal at 128x64, slower for small
# frames (the CPU demo's 64x32); the measurements are in README, Performance. Other devices: off.
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


def _plain_batch_norm(bn: nn.SyncBatchNorm, cls: type[nn.modules.batchnorm._BatchNorm]
                      ) -> nn.modules.batchnorm._BatchNorm:
    """A ``cls`` (BatchNorm1d / BatchNorm2d) with ``bn``'s settings, parameters and buffers (the
    same tensors) and mode."""
    plain = cls(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
    for name, tensor in [*bn.named_parameters(recurse=False), *bn.named_buffers(recurse=False)]:
        setattr(plain, name, tensor)
    return plain.train(bn.training)


def _without_sync_batch_norms(model: VideoBaseline) -> None:
    """Replace every ``SyncBatchNorm`` of ``model`` (``nn.SyncBatchNorm.convert_sync_batchnorm``,
    MODEL.SYN_BN) by the plain BatchNorm it was, in place: ``BatchNorm1d`` for the BNNeck
    ``bottleneck`` (2-d features), ``BatchNorm2d`` everywhere else (the backbones' and the
    attribute streams' norms are all 2-d). In eval mode both compute the same."""
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.SyncBatchNorm):
                one_d = module is model and child_name == "bottleneck"
                setattr(module, child_name,
                        _plain_batch_norm(child, nn.BatchNorm1d if one_d else nn.BatchNorm2d))


def _fold_traced(module: nn.Module, prefix: str) -> tuple[torch.fx.GraphModule, list]:
    """``module`` traced by ``torch.fx`` with every conv -> BatchNorm2d pair folded into the
    convolution (a ``Conv2d`` called once whose output feeds only a ``BatchNorm2d`` called once
    that has running statistics); returns the graph module and the folded
    ``(prefix + conv name, prefix + bn name)`` pairs. ``module`` must be in eval mode."""
    traced = torch.fx.symbolic_trace(module)
    modules = dict(traced.named_modules())
    calls: dict[str, int] = {}
    for node in traced.graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    pairs = []
    for node in list(traced.graph.nodes):
        if node.op != "call_module" or type(modules[node.target]) is not nn.BatchNorm2d:
            continue
        conv_node, bn = node.args[0], modules[node.target]
        if not (isinstance(conv_node, torch.fx.Node) and conv_node.op == "call_module"
                and type(modules[conv_node.target]) is nn.Conv2d and len(conv_node.users) == 1
                and calls[conv_node.target] == 1 and calls[node.target] == 1
                and bn.track_running_stats):
            continue
        parent, _, name = conv_node.target.rpartition(".")
        setattr(traced.get_submodule(parent), name,
                fuse_conv_bn_eval(modules[conv_node.target], bn))
        node.replace_all_uses_with(conv_node)
        traced.graph.erase_node(node)
        pairs.append((prefix + conv_node.target, prefix + node.target))
    traced.graph.lint()
    traced.recompile()
    traced.delete_all_unused_submodules()
    return traced, pairs


def fold_batch_norms(model: VideoBaseline) -> VideoBaseline:
    """An eval-mode copy of ``model`` whose backbone has each BatchNorm folded into the
    convolution before it (``torch.fx``: a conv -> bn pair whose conv feeds nothing else), and
    so have the attribute streams (their ``conv`` -> ``bn``). SyncBatchNorms (MODEL.SYN_BN) are
    folded the same way: the copy holds plain BatchNorms first (:func:`_without_sync_batch_norms`;
    the BNNeck, which follows no convolution, stays a ``BatchNorm1d``).

    In eval mode a BatchNorm is a fixed per-channel affine map, so folding it into the
    convolution's weight and bias computes the same features (to float rounding) without the
    normalisation passes (faster extraction: README, Performance). For inference only (the copy's
    backbone is a ``torch.fx.GraphModule``, without gradient checkpointing; its parameters do
    not require gradients); ``model`` is left as it is. The copy's ``bn_folds`` lists the folded
    ``(conv, bn)`` module names of ``model``: :func:`update_folded_weights` brings the copy up to
    date after ``model``'s weights change.

    Forward of the copy as ``model``'s eval forward: clips (B, T, 3, H, W) -> (feat (B, D),
    attr_logits).
    """
    folded = copy.deepcopy(model).eval()        # (parameters are copied without their .grad)
    _without_sync_batch_norms(folded)
    folded.base, pairs = _fold_traced(folded.base, "base.")
    for name in ("multi_attr_recoger1", "multi_attr_recoger2"):     # the attribute streams
        stream = getattr(folded, name, None)
        if type(getattr(stream, "bn", None)) is nn.BatchNorm2d and stream.bn.track_running_stats:
            stream.conv = fuse_conv_bn_eval(stream.conv, stream.bn)
            stream.bn = nn.Identity()
            pairs.append((f"{name}.conv", f"{name}.bn"))
    folded.requires_grad_(False)
    if folded.channels_last:
        folded.to(memory_format=torch.channels_last)
    folded.bn_folds = tuple(pairs)
    return folded


@torch.no_grad()
def update_folded_weights(folded: nn.Module, model: nn.Module) -> None:
    """Copy ``model``'s current weights into its eval copy ``folded``, in place.

    ``folded`` is :func:`fold_batch_norms`'s copy of ``model`` (or a plain ``copy.deepcopy``: no
    ``bn_folds``). The folded convolutions get the folding of ``model``'s current convolution
    and BatchNorm (weights and running statistics); every other parameter and buffer is copied
    by name. The copy's tensors stay the same objects with the same layout, so a compiled
    forward of the copy stays valid (if it does not freeze the weights into its graph) and
    computes ``model``'s current eval forward.

    Raises:
        KeyError: ``folded`` is not a copy of ``model`` (a tensor of it has no source).
    """
    source = dict(model.named_parameters())
    source.update(model.named_buffers())
    modules, targets = dict(model.named_modules()), dict(folded.named_modules())
    done = set()
    for conv_name, bn_name in getattr(folded, "bn_folds", ()):
        conv, bn = modules[conv_name], modules[bn_name]
        weight, bias = fuse_conv_bn_weights(conv.weight, conv.bias, bn.running_mean,
                                            bn.running_var, bn.eps, bn.weight, bn.bias)
        targets[conv_name].weight.copy_(weight)
        targets[conv_name].bias.copy_(bias)
        done.update((f"{conv_name}.weight", f"{conv_name}.bias"))
    for name, tensor in [*folded.named_parameters(), *folded.named_buffers()]:
        if name not in done:
            tensor.copy_(source[name])


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
        attr_lens=attr_lens if attributes_on(cfg, attr_lens) else None,
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
