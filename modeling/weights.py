"""Loading weights: ImageNet backbones and whole-model checkpoints, with errors that say why.

Every file is read with ``utils.checkpoint.load_file`` (``torch.load(..., weights_only=True)``).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from utils.checkpoint import load_file
from utils.errors import UserError

from .backbones import BACKBONES, TORCHVISION_BACKBONES, build_backbone

logger = logging.getLogger("reid.model")

_CLASSIFIER_PREFIXES = ("fc.", "last_linear.")
# The original's resnet50_ibn_a module keeps its unused ImageNet classifier; we drop its keys.
_BACKBONE_CLASSIFIER_KEYS = ("base.fc.weight", "base.fc.bias")
_SHOW = 5  # keys listed per kind of mismatch


def _as_state_dict(obj: Any, source: str) -> dict[str, torch.Tensor]:
    """The tensor dict of a checkpoint: unwraps {"model": ...} / {"state_dict": ...}, drops the
    "module." prefix of (Distributed)DataParallel files."""
    if isinstance(obj, Mapping):
        for key in ("model", "state_dict"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj or not all(
            isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(f"{source} holds no state dict (a dict of tensors, possibly under "
                        "'model' or 'state_dict'); is it a weights file?")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _listed(keys: list[str]) -> str:
    more = f", ... ({len(keys)} in all)" if len(keys) > _SHOW else ""
    return ", ".join(keys[:_SHOW]) + more


def _is_counter(key: str) -> bool:
    # BatchNorm step counters: absent from old torchvision files and unused in eval mode
    return key.endswith("num_batches_tracked")


def _compare(state: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]
             ) -> tuple[list[str], list[str], list[str]]:
    """(missing, unexpected, 'key: file [..] vs model [..]' shape differences)."""
    missing = [k for k in target if k not in state and not _is_counter(k)]
    unexpected = [k for k in state if k not in target]
    shapes = [f"{k}: file {list(state[k].shape)} vs model {list(target[k].shape)}"
              for k in target if k in state and state[k].shape != target[k].shape]
    return missing, unexpected, shapes


# ------------------------------------------------------------------------------ backbone
def _download_imagenet(name: str) -> dict[str, torch.Tensor]:
    """torchvision's IMAGENET1K_V1 weights of ``name`` (cached under TORCH_HOME after the
    first download)."""
    from torchvision.models import get_model_weights

    weights = get_model_weights(name)["IMAGENET1K_V1"]
    try:
        return torch.hub.load_state_dict_from_url(weights.url, map_location="cpu",
                                                  progress=True, weights_only=True)
    except Exception as e:  # offline, proxy, corrupt download
        raise UserError(
            f"Could not download torchvision's ImageNet weights for {name} ({weights.url}): "
            f"{type(e).__name__}: {e}. Download the file once and pass MODEL.PRETRAIN_PATH "
            "path/to/file.pth, or start from random weights with MODEL.PRETRAIN_CHOICE none."
        ) from None


def _partial_message(source: str, name: str, state: Mapping[str, torch.Tensor],
                     missing: list[str], unexpected: list[str]) -> str:
    """Why ImageNet weights that cover only part of the backbone are refused, and the fixes."""
    parts = [f"{len(keys)} {kind} ({_listed(keys)})"
             for kind, keys in (("missing keys", missing), ("unexpected keys", unexpected)) if keys]
    fits = [n for n in backbones_fitting(state) if n != name]
    hint = f" The file is {' or '.join(fits)} weights." if fits else ""
    return (f"{source} do not cover MODEL.NAME {name}: " + "; ".join(parts) + "." + hint
            + f" Use the weights of {name}, or set MODEL.PRETRAIN_PARTIAL True to load the "
            f"{len(state) - len(unexpected)} tensors in common and keep the rest random.")


def load_backbone_weights(backbone: nn.Module, name: str, path: str = "",
                          partial: bool = False) -> None:
    """Load ImageNet weights into a backbone, skipping the classifier (``fc``/``last_linear``).

    Accepts torchvision-format files and the original's formats (pretrainedmodels SENet files,
    IBN-Net files with a "state_dict" entry and "module." prefixes). The loaded, skipped,
    missing and unexpected keys are reported in one log line (logger "reid.model"); BatchNorm
    step counters may be absent.

    Args:
        backbone: the trunk (``model.base``).
        name: MODEL.NAME, for messages and the torchvision download.
        path: MODEL.PRETRAIN_PATH; empty downloads torchvision's weights (ResNets only).
        partial: MODEL.PRETRAIN_PARTIAL: load the tensors in common when the file lacks some of
            the backbone's or has others (e.g. resnet18 weights into a resnet34), with a warning;
            False makes that an error.

    Raises:
        UserError: missing/unreadable file, offline download, a backbone torchvision lacks
            without a path, shapes that differ, no key in common, or (unless ``partial``)
            missing or unexpected keys.
    """
    if path:
        source = f"ImageNet weights '{path}'"
        state = _as_state_dict(load_file(path, "MODEL.PRETRAIN_PATH file"), source)
    elif name in TORCHVISION_BACKBONES:
        source = f"torchvision's ImageNet weights of {name}"
        state = _as_state_dict(_download_imagenet(name), source)
    else:
        raise UserError(f"torchvision has no ImageNet weights for MODEL.NAME {name}: download "
                        "them (e.g. the pretrainedmodels / IBN-Net release) and pass "
                        "MODEL.PRETRAIN_PATH path/to/file.pth, or use MODEL.PRETRAIN_CHOICE none.")
    target = backbone.state_dict()
    if not any(k in target for k in state) and any(k.startswith("base.") for k in state):
        # a whole-model checkpoint (this project's or the original's): take its backbone
        state = {k.removeprefix("base."): v for k, v in state.items() if k.startswith("base.")}
    skipped = [k for k in state if k.startswith(_CLASSIFIER_PREFIXES)]
    state = {k: v for k, v in state.items() if k not in skipped}
    missing, unexpected, shapes = _compare(state, target)
    if shapes:
        raise UserError(f"{source} do not fit MODEL.NAME {name}: {len(shapes)} shape "
                        f"differences ({_listed(shapes)}). Is the file for {name}?")
    if not any(k in target for k in state):
        raise UserError(f"{source} share no parameter name with MODEL.NAME {name} (file keys "
                        f"like {_listed(list(state))}). Is the file for {name}?")
    if (missing or unexpected) and not partial:
        raise UserError(_partial_message(source, name, state, missing, unexpected))
    backbone.load_state_dict({k: v for k, v in state.items() if k in target}, strict=False)
    level = logging.WARNING if missing or unexpected else logging.INFO
    logger.log(level, "Loaded %s into the %s backbone: %d tensors; skipped classifier: %s; "
               "missing: %s; unexpected: %s", source, name, len(state) - len(unexpected),
               _listed(skipped) or "none", _listed(missing) or "none",
               _listed(unexpected) or "none")


# ------------------------------------------------------------------------------ whole model
def _shapes(state: Mapping[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items() if not _is_counter(k)}


def backbones_fitting(base_state: Mapping[str, torch.Tensor]) -> list[str]:
    """The MODEL.NAMEs whose trunk has exactly these ``base.*`` keys and shapes.

    Each candidate is built on the meta device (no memory, no initialisation cost).
    """
    want = {k.removeprefix("base."): s for k, s in _shapes(base_state).items()}
    fits = []
    for name in BACKBONES.names():
        with torch.device("meta"):
            have = _shapes(build_backbone(name).state_dict())
        if have == want:
            fits.append(name)
    return fits


def _hints(state: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor],
           backbone: str | None = None) -> list[str]:
    """Which configuration would fit a checkpoint that does not fit the model.

    ``backbone`` is the model's MODEL.NAME: no hint asks to check a key that is already right.
    """

    def rows(sd: Mapping[str, torch.Tensor], key: str) -> int | None:
        return int(sd[key].shape[0]) if key in sd else None

    def cols(sd: Mapping[str, torch.Tensor], key: str) -> int | None:
        return int(sd[key].shape[-1]) if key in sd else None

    def has(sd: Mapping[str, torch.Tensor], pattern: str) -> bool:
        return any(re.match(pattern, k) for k in sd)

    hints = []
    ids_f, ids_m = rows(state, "classifier.weight"), rows(target, "classifier.weight")
    if ids_f is not None and ids_m is not None and ids_f != ids_m:
        hints.append(f"checkpoint has a {ids_f}-identity classifier, the model {ids_m}: is "
                     "DATASETS.NAME the dataset it was trained on?")
    attr_f, attr_m = has(state, r"multi_attr_recoger"), has(target, r"multi_attr_recoger")
    if attr_f != attr_m:
        hints.append(f"checkpoint {'has' if attr_f else 'has no'} attribute streams: set "
                     f"ATTR_RECOG_ON {attr_f} (and use a dataset with attributes).")
    elif attr_f:
        mce_f = has(state, r"multi_attr_recoger\d\.attr_recog_modules")
        if mce_f != has(target, r"multi_attr_recoger\d\.attr_recog_modules"):
            hints.append(f"checkpoint was trained with DATASETS.ATTRIBUTE_LOSS "
                         f"{'mce' if mce_f else 'bce'}.")
        for g, group in ((1, "ID-irrelevant"), (2, "ID-relevant")):
            key = f"multi_attr_recoger{g}.classifier.weight"
            n_f, n_m = rows(state, key), rows(target, key)
            if n_f is not None and n_m is not None and n_f != n_m:
                hints.append(f"checkpoint has a {n_f}-way {group} attribute classifier, the "
                             f"model {n_m}-way (MARS 41, Duke 33 for the ID-relevant group): is "
                             "DATASETS.NAME right?")
            key = f"multi_attr_recoger{g}.attention_t_conv.weight"
            n_f, n_m = rows(state, key), rows(target, key)
            if g == 1 and n_f is not None and n_m is not None and n_f != n_m:
                hints.append(f"checkpoint's attribute attention covers {n_f} feature-map "
                             f"positions, the model's {n_m}: set INPUT.SIZE_TRAIN/SIZE_TEST "
                             "(and MODEL.LAST_STRIDE) as in training (256x128 with stride 1 "
                             "gives 16x8 = 128).")
    ta_f, ta_m = "attention_conv.weight" in state, "attention_conv.weight" in target
    if ta_f != ta_m:
        hints.append("checkpoint " + ("uses" if ta_f else "has no") + " temporal attention: "
                     "MODEL.FUSION_METHOD " + ("TA or ATTR_TA." if ta_f else "baseline."))
    d_f, d_m = cols(state, "classifier.weight"), cols(target, "classifier.weight")
    if d_f is not None and d_m is not None and d_f != d_m and ta_f == ta_m:
        hints.append(f"checkpoint's feature has {d_f} dimensions, the model's {d_m}: ATTR_TA "
                     "gives 3x the backbone channels (MODEL.FUSION_METHOD, MODEL.NAME).")
    neck_f, neck_m = "bottleneck.weight" in state, "bottleneck.weight" in target
    if neck_f != neck_m:
        hints.append(f"checkpoint was trained with MODEL.NECK {'bnneck' if neck_f else 'no'}.")
    base_f = {k: v for k, v in state.items() if k.startswith("base.")}
    base_m = {k: v for k, v in target.items() if k.startswith("base.")}
    if _shapes(base_f) != _shapes(base_m):
        fits = backbones_fitting(base_f)
        if fits and backbone not in fits:  # (MODEL.NAME right: the message lists the keys)
            hints.append(f"the checkpoint's backbone is {' or '.join(fits)}, not MODEL.NAME "
                         f"{backbone or 'of the model'}: set MODEL.NAME {fits[0]}.")
        elif not fits:
            hints.append("the checkpoint's backbone is none of "
                         f"{', '.join(BACKBONES.names())} (keys like {_listed(sorted(base_f))}).")
    return hints


ID_CLASSIFIER_KEYS = ("classifier.weight", "classifier.bias")   # the identity classifier


def load_model_weights(model: nn.Module, path_or_state_dict: str | os.PathLike | Mapping,
                       source: str | None = None, retrieval_only: bool = False) -> None:
    """Load a whole-model checkpoint strictly (evaluation-only runs, PRETRAIN_CHOICE "self").

    Accepts this project's checkpoints (a dict with "model"), plain state dicts and the
    original's files ("module." prefix stripped). BatchNorm step counters
    (``num_batches_tracked``) may be absent.

    Args:
        model: the VideoBaseline (not DDP-wrapped).
        path_or_state_dict: a file path, or an already loaded checkpoint / state dict.
        source: how messages name an already loaded checkpoint, e.g. ``"checkpoint 'x.pth'"``
            (default: the path, or "checkpoint").
        retrieval_only: the model only extracts features (evaluation, export): an identity
            classifier that does not fit (a checkpoint trained on another dataset, with another
            number of identities) is not loaded, with one log line; retrieval never uses it.

    Raises:
        UserError: unreadable file, or keys/shapes that do not fit the model; the message lists
            the missing, unexpected and differently shaped keys (first few and counts) and the
            configuration that would fit.
    """
    if isinstance(path_or_state_dict, (str, os.PathLike)):
        source = f"checkpoint '{os.fspath(path_or_state_dict)}'"
        obj = load_file(os.fspath(path_or_state_dict))
    else:
        source, obj = source or "checkpoint", path_or_state_dict
    state = _as_state_dict(obj, source)
    target = model.state_dict()
    dropped = [k for k in _BACKBONE_CLASSIFIER_KEYS if k in state and k not in target]
    if dropped:
        state = {k: v for k, v in state.items() if k not in dropped}
        logger.info("Dropped the backbone's unused ImageNet classifier (%s) of %s: the "
                    "original's resnet50_ibn_a keeps it, this model does not need it.",
                    ", ".join(dropped), source)
    if retrieval_only:
        unfit = [k for k in ID_CLASSIFIER_KEYS if k in state
                 and (k not in target or tuple(state[k].shape) != tuple(target[k].shape))]
        if unfit:
            shapes = ", ".join(f"{k} {list(state[k].shape)} vs the model's "
                               f"{list(target[k].shape) if k in target else 'none'}"
                               for k in unfit)
            state = {k: v for k, v in state.items() if k not in unfit}
            target = {k: v for k, v in target.items() if k not in ID_CLASSIFIER_KEYS}
            logger.info("The identity classifier of %s does not fit this dataset (%s): loaded "
                        "everything else; retrieval does not use the classifier.", source,
                        shapes)
    missing, unexpected, shapes = _compare(state, target)
    if missing or unexpected or shapes:
        parts = [f"{len(keys)} {kind} ({_listed(keys)})"
                 for kind, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                                    ("shape differences", shapes)) if keys]
        hints = _hints(state, target, getattr(model, "backbone_name", None))
        raise UserError(f"The {source} does not fit the model built from the config: "
                        + "; ".join(parts) + "."
                        + (" Hints: " + " ".join(hints) if hints else "")
                        + " Fix: build the model the checkpoint was trained with (pass its run "
                        "folder's config.yaml to --config_file), or use a checkpoint of this "
                        "model.")
    model.load_state_dict(state, strict=False)  # only step counters can be absent here
    logger.info("Loaded model weights from %s (%d tensors).", source, len(state))
