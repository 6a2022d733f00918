"""The architecture diagram of ``python -m tools.visualize architecture``.

:func:`describe_architecture` builds a config's model on the CPU and reads its real shapes;
:func:`visualize_architecture` draws them with :func:`utils.pictures.draw_architecture`. It
needs no checkpoint or dataset. The picture goes to OUTPUT_DIR (``output/`` when empty) unless a
path is given: never into the source tree by default.
"""

from __future__ import annotations

import logging
import os

import torch
from torch import nn

from engine.defaults import check_output_dir, load_cfg
from layers import make_loss
from modeling import build_model
from tools.model_info import dataset_facts, dataset_schema
from utils.pictures import draw_architecture, loss_labels

logger = logging.getLogger("reid.visualize")

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_ARCH_CONFIG = os.path.join("configs", "mars_aitl.yml")
ARCH_FILE = "architecture.png"   # the default picture's name, in OUTPUT_DIR


def _forward_shapes(model: nn.Module, t: int, h_in: int, w_in: int) -> dict:
    """One eval forward pass of a dummy clip (1, t, 3, h_in, w_in): the backbone map's shape
    ``"F"`` (B*T, C, h, w), the feature ``"feat"`` (1, D), the attribute logits and the
    attention maps."""
    seen = {}
    hook = model.base.register_forward_hook(lambda m, i, o: seen.__setitem__("F", o.shape))
    try:
        with torch.no_grad():
            clip = torch.zeros(1, t, 3, h_in, w_in)
            feat, attr_logits = model(clip)
            maps = model.forward_attention(clip)
    finally:
        hook.remove()
    return {"F": seen["F"], "feat": feat, "attr_logits": attr_logits, "maps": maps}


def _attribute_info(model: nn.Module, attr_logits, maps: dict, group_names) -> dict:
    """The attribute streams' part of :func:`describe_architecture`."""
    mode = model.attribute_loss
    sizes = [len(g) for g in model.attr_lens]
    widths = [int(a.shape[1]) for a in attr_logits]
    if mode == "mce":                       # one head per attribute, in CSV order
        widths = [sum(widths[:sizes[0]]), sum(widths[sizes[0]:])]
    streams = [model.multi_attr_recoger1, model.multi_attr_recoger2]
    return dict(attr_mode=mode, group_sizes=sizes, group_widths=widths,
                group_names=[list(g) for g in group_names],
                stream_mid=streams[0].conv.out_channels,
                positions=(streams[0].attention_t_conv.in_channels if mode == "bce" else None),
                attr_map=tuple(maps["unrelated"].shape[-2:]))


def describe_architecture(cfg, num_classes: int | None = None) -> dict:
    """Build the config's model on the CPU and read its real shapes.

    The backbone map, the attention maps, the feature and the logits come from one forward
    pass of a dummy clip (1, T, 3, H, W) in eval mode; layer widths from the layers themselves;
    the loss terms and their weights from the training criterion (``layers.make_loss``).

    Args:
        cfg: the config (MODEL.*, INPUT.SIZE_TRAIN, DATASETS.NAME/SEQ_LEN/ATTRIBUTE_LOSS, ...).
        num_classes: training identities; default: the standard split of DATASETS.NAME.

    Returns:
        dict of the names, shapes and numbers the diagram writes (the keys
        :func:`utils.pictures.draw_architecture` reads).
    """
    name = cfg.DATASETS.NAME
    schema = dataset_schema(name, cfg.DATASETS.ROOT_DIR)
    num_classes, attr_lens = dataset_facts(name, cfg.DATASETS.ROOT_DIR, num_classes)
    model = build_model(cfg, num_classes, attr_lens, load_pretrained=False).eval()
    t = cfg.DATASETS.SEQ_LEN
    h_in, w_in = (int(v) for v in cfg.INPUT.SIZE_TRAIN)
    out = _forward_shapes(model, t, h_in, w_in)
    criterion = make_loss(cfg, num_classes, attr_lens if model.attr_on else None,
                          feat_dim=model.feat_dim)
    _, c, h, w = out["F"]
    identity = out["maps"]["identity"]
    info = {
        "dataset": name, "backbone": cfg.MODEL.NAME, "last_stride": cfg.MODEL.LAST_STRIDE,
        "T": t, "H": h_in, "W": w_in, "C": int(c), "h": int(h), "w": int(w),
        "fusion": model.fusion_method, "feat_dim": int(out["feat"].shape[1]),
        "num_classes": model.classifier.out_features, "neck": model.neck,
        "neck_feat": model.neck_feat, "attr_mode": None,
        "params": sum(p.numel() for p in model.parameters()) / 1e6,
        "id_map": None if identity is None else tuple(identity.shape[-2:]),
        "label_smooth": cfg.MODEL.IF_LABELSMOOTH == "on", "distance": cfg.DISTANCE,
        "margin": cfg.SOLVER.MARGIN, "center_loss": criterion.center_loss is not None,
        "loss_terms": criterion.terms,
        "loss_formula": criterion.formula(loss_labels(criterion.attr_mode)),
    }
    if model.attr_on:
        info.update(_attribute_info(model, out["attr_logits"], out["maps"], schema.groups))
    return info


def visualize_architecture(cfg_file: str | None, opts: list[str], out_path: str | None = None,
                           num_classes: int | None = None) -> str:
    """Diagram of the config's model (default configs/mars_aitl.yml); returns the PNG path.

    Args:
        cfg_file: the config file, or empty/None for :data:`DEFAULT_ARCH_CONFIG`.
        opts: ``KEY VALUE`` overrides.
        out_path: the PNG (default: OUTPUT_DIR/:data:`ARCH_FILE`, checked to be writable
            before the model is built).
        num_classes: training identities (default: the standard split of DATASETS.NAME).
    """
    cfg_file = cfg_file or os.path.join(REPO_ROOT, DEFAULT_ARCH_CONFIG)
    cfg = load_cfg(cfg_file, opts)
    out_path = out_path or os.path.join(check_output_dir(cfg.OUTPUT_DIR), ARCH_FILE)
    info = describe_architecture(cfg, num_classes)
    name = (os.path.relpath(cfg_file, REPO_ROOT)
            if os.path.abspath(cfg_file).startswith(REPO_ROOT) else cfg_file)
    path = draw_architecture(info, out_path, name)
    logger.info("Wrote %s", path)
    return path
