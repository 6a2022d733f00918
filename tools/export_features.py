"""Command: the features of a split, or of any folder of tracklets, in one ``.npz`` file.

    python -m tools.export_features --config_file F --split query --out query.npz TEST.WEIGHT W
    python -m tools.export_features --config_file F --split path/to/tracklets --out new.npz \
        TEST.WEIGHT W

``--split`` is ``query``, ``gallery`` or ``train`` of DATASETS.NAME at DATASETS.ROOT_DIR, or a
folder laid out as one split of the folder dataset (``<pid>/<camid>_<tracklet>/<frames>``,
:func:`data.datasets.folder.split_tracklets`). Every dense clip of every tracklet goes through
the eval-mode model and the clip features are pooled exactly as evaluation does (the loaders of
:func:`data.build.make_test_loader`, :func:`engine.evaluator.extract_features`), so two exported
files ranked by ``python -m tools.search`` give the numbers of ``main_baseline.py --eval-only``.

The file holds ``features`` (N, D) float32 (as the model gives them; the search normalises
them when ``meta`` says so), ``pids`` (N,) and ``camids`` (N,) int64 (pids as the folders
name them, train ones not relabelled), ``tracklets`` (N,) str (each tracklet's folder relative
to the root, or its first frame where tracklets share a folder, as in MARS), ``attr_pred``
(N, n_attr) int64 class indices when the model has attribute streams, and ``meta``, a JSON
string (:data:`META_KEYS`). The config's dataset folder must be readable (the model's identity
count and attribute schema come from it; its images are not read unless exported).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter

import numpy as np
from yacs.config import CfgNode

from data import build_dataset
from data.attributes import decode_attribute_logits
from data.build import make_test_loader
from data.datasets import Tracklet, VideoReIDDataset
from data.datasets.folder import split_tracklets
from engine import default_argument_parser, evaluation_dtype, parse_command_line
from engine.defaults import DEFAULT_CONFIG, load_cfg
from engine.evaluator import evaluation_kwargs, extract_features, load_trained_model
from engine.precision import dtype_name
from tools.synthetic import ensure_dataset
from utils.checkpoint import atomic_write, check_writable_file
from utils.comm import resolve_device
from utils.errors import UserError, run_cli

__all__ = ["META_KEYS", "SPLITS", "build_parser", "export_features", "load_trained_model",
           "main", "tracklet_names", "write_npz"]

SPLITS = ("query", "gallery", "train")
# What ``meta`` records: where the features come from and how the search compares them.
META_KEYS = ("config_file", "weights", "dataset", "root", "split", "feat_dim", "pool",
             "feat_norm", "metric", "re_rank", "neck_feat", "seq_len", "input_size",
             "attr_names", "precision")


def _split_tracklets(cfg: CfgNode, dataset: VideoReIDDataset, split: str
                     ) -> tuple[list[Tracklet], str, str]:
    """(tracklets, the root their names are relative to, the seed stream) of ``--split``."""
    if split in SPLITS:
        return getattr(dataset, split), cfg.DATASETS.ROOT_DIR, split
    if os.path.isdir(split):
        return split_tracklets(split)[0], split, "query"
    raise UserError(f"--split {split!r} is neither one of {', '.join(SPLITS)} nor a folder. Fix: "
                    "name a split of DATASETS.NAME, or a folder of <pid>/<camid>_<tracklet>/ "
                    "tracklet folders (README, Your own data).")


def tracklet_names(tracklets: list[Tracklet], root: str) -> list[str]:
    """Each tracklet's folder relative to ``root``, or its first frame's path where tracklets
    share a folder (MARS keeps a person's tracklets in one folder)."""
    folders = [os.path.dirname(t.img_paths[0]) for t in tracklets]
    count = Counter(folders)
    return [os.path.relpath(t.img_paths[0] if count[f] > 1 else f, root)
            for t, f in zip(tracklets, folders, strict=True)]


def write_npz(path: str, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` to ``path`` atomically (a temporary file, then a rename).

    Raises:
        UserError: the file cannot be written.
    """
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        atomic_write(path, lambda f: np.savez(f, **arrays), suffix=".npz")
    except OSError as e:
        raise UserError(f"Cannot write '{path}': {e.strerror or e}. Choose an --out you can "
                        "write to.") from None


def export_features(cfg: CfgNode, split: str, config_file: str = "",
                    progress: bool = True) -> dict[str, np.ndarray]:
    """The arrays of the ``.npz`` file of ``split`` (see the module docstring).

    Args:
        cfg: the config (its dataset, model, TEST.WEIGHT and test settings).
        split: "query", "gallery", "train" or a folder laid out as one split.
        config_file: the config file's path, recorded in ``meta``.
        progress: show the extraction's progress bar (on stderr, where it is a terminal;
            :func:`engine.evaluator.extract_features`).

    Returns:
        ``features`` (N, D) float32, ``pids``, ``camids`` (N,) int64, ``tracklets`` (N,) str,
        ``attr_pred`` (N, n_attr) int64 (with attribute streams), ``meta`` (a JSON string).
    """
    dataset = build_dataset(cfg)
    tracklets, root, stream = _split_tracklets(cfg, dataset, split)
    device, _ = resolve_device(cfg.MODEL.DEVICE, cfg.MODEL.DEVICE_ID)
    model = load_trained_model(cfg, dataset, device)
    settings = evaluation_kwargs(cfg, dataset, device, evaluation_dtype(cfg, device))
    out = extract_features(model, make_test_loader(cfg, tracklets, stream), device,
                           settings["clips_per_batch"], settings["pool"], settings["amp_dtype"],
                           compile_model=settings["compile_model"],
                           progress=None if progress else False, desc=f"features of {split}")
    arrays = {"features": out["feats"].float().cpu().numpy(),
              "pids": np.array([t.key[0] for t in tracklets], dtype=np.int64),
              "camids": out["camids"],
              "tracklets": np.array(tracklet_names(tracklets, root), dtype=str)}
    if out["attr_logits"] is not None:
        arrays["attr_pred"] = decode_attribute_logits(out["attr_logits"],
                                                      dataset.attr_lens).cpu().numpy()
    meta = {"config_file": config_file, "weights": cfg.TEST.WEIGHT,
            "dataset": cfg.DATASETS.NAME, "root": os.path.abspath(root), "split": split,
            "feat_dim": int(arrays["features"].shape[1]), "pool": settings["pool"],
            "feat_norm": settings["feat_norm"], "metric": settings["metric"],
            "re_rank": settings["re_rank"], "neck_feat": cfg.TEST.NECK_FEAT,
            "seq_len": cfg.DATASETS.SEQ_LEN, "input_size": list(cfg.INPUT.SIZE_TEST),
            "attr_names": dataset.attr_names if "attr_pred" in arrays else [],
            "precision": dtype_name(settings["amp_dtype"])}
    arrays["meta"] = np.array(json.dumps(meta))
    return arrays


def build_parser() -> argparse.ArgumentParser:
    """``--config_file``, ``--split``, ``--out``, ``--no-progress`` and ``KEY VALUE``
    overrides (TEST.WEIGHT among them)."""
    parser = default_argument_parser(
        "Write the features of a split (or a folder of tracklets) to one .npz file: "
        "features, pids, camids, tracklets, attr_pred, meta.", DEFAULT_CONFIG)
    parser.prog = "python -m tools.export_features"
    parser.add_argument("--split", required=True,
                        help="query, gallery, train, or a folder of <pid>/<camid>_<tracklet>/")
    parser.add_argument("--out", required=True, metavar="FILE.npz",
                        help="the file to write (missing folders are created)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


@run_cli
def main(argv: list[str] | None = None) -> int:
    """Command line; returns 0, or 2 (message on stderr) for a user error."""
    args = parse_command_line(build_parser(), argv)
    cfg = load_cfg(args.config_file or None, args.opts)
    check_writable_file(args.out)            # before the extraction, not after it
    ensure_dataset(cfg)
    arrays = export_features(cfg, args.split, args.config_file, not args.no_progress)
    write_npz(args.out, arrays)
    n, d = arrays["features"].shape
    extra = f" and {arrays['attr_pred'].shape[1]} attributes" if "attr_pred" in arrays else ""
    print(f"wrote {n} tracklets x {d} features{extra} ({args.split}) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
