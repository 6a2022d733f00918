"""Parameter counts and FLOPs of the configured model.

``python -m tools.model_info --config_file FILE [--num-classes N] [KEY VALUE ...]`` prints the
parameters (total, backbone, identity head, attribute streams) and the FLOPs of one clip
(1 x SEQ_LEN frames at INPUT.SIZE_TRAIN) counted by ``torch.utils.flop_counter.FlopCounterMode``,
and the multiply-accumulates (FLOPs / 2), the unit of the paper's "20.7 GFLOPs". The model is
built on the meta device: nothing is downloaded, allocated or computed. The classifier width and
the attribute class counts are the dataset's (:func:`dataset_facts`).
"""

from __future__ import annotations

import argparse
import sys

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from data.attributes import AttributeSchema
from data.datasets import DATASETS
from engine import parse_command_line
from engine.defaults import load_cfg
from modeling import build_model
from utils.errors import UserError, run_cli

_STREAMS = ("multi_attr_recoger", "attention_fusion")


def _part(name: str) -> str:
    if name.startswith("base."):
        return "backbone"
    if name.startswith(_STREAMS):
        return "attribute_streams"
    return "identity_head"


def count_parameters(model: nn.Module) -> dict[str, int]:
    """Parameter counts: ``total``, ``trainable`` and per part (``backbone``,
    ``identity_head`` [TA attention, BNNeck, classifier], ``attribute_streams``)."""
    counts = {"total": 0, "trainable": 0, "backbone": 0, "identity_head": 0,
              "attribute_streams": 0}
    for name, p in model.named_parameters():
        counts["total"] += p.numel()
        counts["trainable"] += p.numel() if p.requires_grad else 0
        counts[_part(name)] += p.numel()
    return counts


def count_flops(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, float]:
    """FLOPs of one eval forward of a zero input of ``input_shape`` (B, T, 3, H, W).

    Works on any device, the meta device included (then nothing is computed). The model's
    train/eval mode is restored afterwards.

    Returns:
        dict with ``flops`` (FlopCounterMode total), ``macs`` (= flops / 2) and the FLOPs of
        ``backbone``, ``attribute_streams`` and ``identity_head`` (the rest: TA attention,
        pooling, BNNeck).
    """
    param = next(model.parameters())
    x = torch.zeros(input_shape, device=param.device, dtype=param.dtype)
    counter = FlopCounterMode(display=False, depth=None)
    was_training = model.training
    model.eval()
    try:
        with counter, torch.no_grad():
            model(x)
    finally:
        model.train(was_training)
    total = counter.get_total_flops()
    root = type(model).__name__
    per_module = {k: sum(v.values()) for k, v in counter.get_flop_counts().items()}
    backbone = per_module.get(f"{root}.base", 0)
    streams = sum(per_module.get(f"{root}.multi_attr_recoger{g}", 0) for g in (1, 2))
    return {"flops": float(total), "macs": total / 2, "backbone": float(backbone),
            "attribute_streams": float(streams),
            "identity_head": float(total - backbone - streams)}


def dataset_schema(name: str, root: str = "") -> AttributeSchema | None:
    """The attribute schema of a dataset: its class's, or the folder dataset's
    ``root/attributes.yml`` (None without attributes)."""
    return DATASETS[name].schema_for(root)


def dataset_facts(name: str, root: str = "", num_classes: int | None = None
                  ) -> tuple[int, list[list[int]] | None]:
    """``(training identities, attribute class counts per group or None)`` of a dataset.

    Read from its class (:data:`DATASETS`); the folder dataset has no standard split
    (``num_classes`` must be given) and keeps its attribute schema in ``root/attributes.yml``
    (None when the file is absent).

    Raises:
        UserError: no ``num_classes`` for a dataset without a standard split.
    """
    schema = dataset_schema(name, root)
    num_classes = num_classes or DATASETS[name].standard_train_pids
    if num_classes is None:
        raise UserError(f"DATASETS.NAME {name} has no standard split: pass the number of "
                        "training identities with --num-classes N.")
    return num_classes, (schema.attr_lens if schema is not None else None)


def build_parser() -> argparse.ArgumentParser:
    """Command line of ``python -m tools.model_info``."""
    parser = argparse.ArgumentParser(prog="python -m tools.model_info",
                                     description="Parameters and FLOPs of the configured model.")
    parser.add_argument("--config_file", default="", help="path to a yml config")
    parser.add_argument("--num-classes", "--num_classes", type=int, default=None, metavar="N",
                        help="training identities (default: the dataset's, MARS 625)")
    parser.add_argument("opts", nargs="*", help="config overrides: KEY VALUE ...")
    return parser


@run_cli
def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (2 for a user error)."""
    args = parse_command_line(build_parser(), argv)
    cfg = load_cfg(args.config_file or None, args.opts)
    num_classes, attr_lens = dataset_facts(cfg.DATASETS.NAME, cfg.DATASETS.ROOT_DIR,
                                           args.num_classes)
    with torch.device("meta"):
        model = build_model(cfg, num_classes, attr_lens, load_pretrained=False)
    shape = (1, cfg.DATASETS.SEQ_LEN, 3, *cfg.INPUT.SIZE_TRAIN)
    params = count_parameters(model)
    flops = count_flops(model, shape)
    mega, giga = 1e6, 1e9
    print(f"Model: {cfg.MODEL.NAME}, {model.extra_repr()}; {num_classes} identities")
    print(f"Parameters: {params['total'] / mega:.2f} M "
          f"(trainable {params['trainable'] / mega:.2f} M)")
    for part in ("backbone", "identity_head", "attribute_streams"):
        print(f"  {part:<18} {params[part] / mega:9.2f} M")
    print(f"Per clip {list(shape)}: {flops['flops'] / giga:.2f} GFLOPs "
          f"= {flops['macs'] / giga:.2f} G multiply-accumulates (the paper's 'GFLOPs')")
    for part in ("backbone", "identity_head", "attribute_streams"):
        print(f"  {part:<18} {flops[part] / giga:9.2f} GFLOPs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
