"""Pictures of a trained model: ranked retrieval lists, attention maps and training curves.

    python -m tools.visualize ranks --config_file FILE [--num-queries N --topk K] TEST.WEIGHT PATH
    python -m tools.visualize attention --config_file FILE [--tracklet I --split query] \
        TEST.WEIGHT PATH
    python -m tools.visualize curves RUN_DIR
    python -m tools.visualize architecture [--config_file FILE] [--out PATH] [--num-classes N] \
        [KEY VALUE ...]

Pictures go under OUTPUT_DIR, or the folder of TEST.WEIGHT when OUTPUT_DIR is not given. PATH
may be a glob of several checkpoints (``<run>/rank1_*.pth``): the best rank-1 one is used. The
architecture diagram of a config (default configs/mars_aitl.yml) goes to --out (default
OUTPUT_DIR/architecture.png) and needs no checkpoint or dataset. The drawing itself is
:mod:`utils.pictures`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader
from yacs.config import CfgNode

from data import make_data_loaders
from data.attributes import decode_attribute_logits
from data.datasets import VideoReIDDataset
from data.sampling import sample_evenly_clip
from data.transforms import build_transforms
from engine import CONFIG_KEY, evaluation_dtype, parse_command_line
from engine.defaults import load_cfg
from engine.evaluator import (
    clips_per_batch,
    extract_features,
    inference_model,
    load_trained_model,
    query_gallery_distances,
    read_trained_weights,
)
from tools.architecture import ARCH_FILE, DEFAULT_ARCH_CONFIG, visualize_architecture
from tools.synthetic import ensure_dataset
from utils.checkpoint import choose_checkpoint
from utils.comm import resolve_device
from utils.errors import UserError, run_cli
from utils.logger import setup_logger
from utils.pictures import (
    attribute_lines,
    draw_attention,
    draw_ranked_list,
    plot_curves,
)

logger = logging.getLogger("reid.visualize")


class LoadedRun(NamedTuple):
    """What the ranks and attention commands work on."""

    cfg: CfgNode
    device: torch.device
    dataset: VideoReIDDataset
    query_loader: DataLoader
    gallery_loader: DataLoader
    model: torch.nn.Module
    out_dir: str

    @property
    def weight_name(self) -> str:
        """The checkpoint's file name without ``.pth``: pictures of two checkpoints of one run
        folder go to different folders."""
        return os.path.splitext(os.path.basename(self.cfg.TEST.WEIGHT))[0]


def one_weight(opts: list[str]) -> list[str]:
    """``opts`` with one path after TEST.WEIGHT where a shell glob gave several.

    ``TEST.WEIGHT <run>/rank1_*.pth`` reaches the command as ``TEST.WEIGHT a.pth b.pth ...``:
    the words up to the next config key are the candidates, and
    :func:`utils.checkpoint.choose_checkpoint` picks one (the best rank-1, or the newest
    file); the log says which.
    """
    keys = [i for i in range(0, len(opts), 2) if opts[i] == "TEST.WEIGHT"]
    if not keys:
        return opts
    start = end = keys[0] + 1
    while end < len(opts) and not CONFIG_KEY.match(opts[end]):
        end += 1
    if end - start < 2:
        return opts
    path, why = choose_checkpoint(opts[start:end])
    logger.info("TEST.WEIGHT: %d files given; using %s, %s.", end - start, path, why)
    return [*opts[:start], path, *opts[end:]]


def load_run(cfg_file: str | None, opts: list[str]) -> LoadedRun:
    """The config, device, dataset, loaders and the model loaded from TEST.WEIGHT (eval mode,
    :func:`engine.evaluator.load_trained_model`).

    The checkpoint is read before the dataset so that a bad path fails at once. Pictures go
    under OUTPUT_DIR when it is given on the command line, else beside the checkpoint (the
    trained run's folder). TEST.WEIGHT may be followed by several paths (:func:`one_weight`).
    """
    opts = one_weight(opts)
    cfg = load_cfg(cfg_file, opts, freeze=False)
    state = read_trained_weights(cfg)
    cfg.DATALOADER.NUM_WORKERS = min(cfg.DATALOADER.NUM_WORKERS, 2)
    cfg.freeze()
    device, _ = resolve_device(cfg.MODEL.DEVICE, cfg.MODEL.DEVICE_ID)
    ensure_dataset(cfg)
    _, query_loader, gallery_loader, dataset = make_data_loaders(cfg)
    model = load_trained_model(cfg, dataset, device, state)
    given = "OUTPUT_DIR" in opts[0::2] and cfg.OUTPUT_DIR
    out_dir = cfg.OUTPUT_DIR if given else os.path.dirname(os.path.abspath(cfg.TEST.WEIGHT))
    return LoadedRun(cfg, device, dataset, query_loader, gallery_loader, model, out_dir)


# ---------------------------------------------------------------------------------- ranks
def _query_gallery_distances(run: LoadedRun) -> tuple[np.ndarray, dict, dict]:
    """The (M, N) query-gallery distances of the test protocol and the extracted features."""
    cfg, device = run.cfg, run.device
    chunk, pool = clips_per_batch(cfg, device), cfg.TEST.TEMPORAL_POOL_METHOD
    amp_dtype = evaluation_dtype(cfg, device)            # the evaluation's precision
    model = inference_model(run.model, compile_model=cfg.TEST.COMPILE)  # once for both
    # progress bars on stderr where it is a terminal (engine.evaluator.extract_features)
    q = extract_features(model, run.query_loader, device, chunk, pool, amp_dtype, fold_bn=False,
                         desc="query features")
    g = extract_features(model, run.gallery_loader, device, chunk, pool, amp_dtype,
                         fold_bn=False, desc="gallery features")
    dist = query_gallery_distances(q["feats"], g["feats"], cfg.DISTANCE,
                                   cfg.TEST.FEAT_NORM == "yes", cfg.TEST.RE_RANKING == "yes")
    return dist, q, g


def top_k(dist: np.ndarray, q_pid: int, q_camid: int, g_pids: np.ndarray, g_camids: np.ndarray,
          k: int) -> np.ndarray:
    """Gallery indices of the ``k`` nearest retrievals of one query, nearest first.

    As in the evaluation protocol, a gallery tracklet of the query's identity seen by the
    query's camera is not a retrieval; ties keep gallery order.

    Args:
        dist: (N,) distances of the query to the gallery.
        q_pid, q_camid: the query's identity and camera.
        g_pids, g_camids: (N,) the gallery's identities and cameras.
        k: how many to return (fewer when fewer remain).
    """
    order = np.argsort(dist, kind="stable")
    keep = ~((g_pids[order] == q_pid) & (g_camids[order] == q_camid))
    return order[keep][:k]


def visualize_ranks(cfg_file: str | None, opts: list[str], num_queries: int = 8,
                    topk: int = 10) -> list[str]:
    """Write one PNG per query (``<out>/ranks/query_XXXX.png``); returns their paths.

    The ``num_queries`` queries are spread evenly over the query set.
    """
    run = load_run(cfg_file, opts)
    dist, q, g = _query_gallery_distances(run)
    query, gallery = run.dataset.query, run.dataset.gallery
    folder = os.path.join(run.out_dir, f"ranks_{run.weight_name}")
    picks = np.linspace(0, len(query) - 1, num=min(num_queries, len(query))).round().astype(int)
    written = []
    for qi in picks:
        order = top_k(dist[qi], q["pids"][qi], q["camids"][qi], g["pids"], g["camids"], topk)
        written.append(draw_ranked_list(
            query[qi], [gallery[j] for j in order], dist[qi, order].tolist(),
            (g["pids"][order] == q["pids"][qi]).tolist(),
            os.path.join(folder, f"query_{qi:04d}.png")))
    logger.info("Wrote %d ranked lists to %s", len(written), folder)
    return written


# ---------------------------------------------------------------------------------- attention
def _clip_frames(paths: tuple, seq_len: int) -> list[str]:
    """The ``seq_len`` frames of a tracklet's evenly spaced clip, in temporal order (the
    "evenly" clip sampling, :func:`data.sampling.sample_evenly_clip`: cycled when the tracklet
    is shorter)."""
    return [paths[i] for i in sample_evenly_clip(len(paths), seq_len).tolist()]


def _predicted_lines(run: LoadedRun, attr_logits, truth) -> list[tuple[str, tuple]]:
    """The attribute table (prediction / truth) of one clip, or [] without attributes."""
    dataset = run.dataset
    if attr_logits is None or dataset.attr_lens is None:
        return []
    pred = decode_attribute_logits(attr_logits, dataset.attr_lens, run.model.attribute_loss)[0]
    flat = [n for grp in dataset.attr_lens for n in grp]
    return attribute_lines(dataset.attr_names, [len(g) for g in dataset.attr_lens], flat,
                           pred.tolist(), truth)


def visualize_attention(cfg_file: str | None, opts: list[str], tracklet: int = 0,
                        split: str = "query") -> str:
    """Frames of one tracklet with the identity and attribute attention maps; returns the PNG
    (``<out>/attention/<split>_XXXX.png``, see :func:`utils.pictures.draw_attention`)."""
    run = load_run(cfg_file, opts)
    tracks = getattr(run.dataset, split)
    if not 0 <= tracklet < len(tracks):
        raise UserError(f"--tracklet {tracklet} is out of range: the {split} set has "
                        f"{len(tracks)} tracklets.")
    track = tracks[tracklet]
    frames = _clip_frames(track.img_paths, run.cfg.DATASETS.SEQ_LEN)
    transform = build_transforms(run.cfg, is_train=False)
    clip = transform([Image.open(p).convert("RGB") for p in frames]).unsqueeze(0).to(run.device)
    with torch.no_grad():
        maps = run.model.forward_attention(clip)                    # each (1, T, h, w) or None
        _, attr_logits = run.model(clip)
    streams = (("identity (TA)", "identity"), ("ID-irrelevant\nattributes (A1)", "unrelated"),
               ("ID-relevant\nattributes (A2)", "related"))
    rows = [(f"{split} #{tracklet}\nid {track.pid}, cam {track.camid + 1}", None)] + [
        (label, maps[key][0].float().cpu().numpy()) for label, key in streams
        if maps.get(key) is not None]
    path = draw_attention(frames, rows, _predicted_lines(run, attr_logits, track.attributes),
                          os.path.join(run.out_dir, f"attention_{run.weight_name}",
                                       f"{split}_{tracklet:04d}.png"))
    logger.info("Wrote %s", path)
    return path


# ---------------------------------------------------------------------------------- curves
def visualize_curves(run_dir: str) -> str:
    """Redraw ``run_dir/curves.png`` from ``run_dir/metrics.json``; returns the PNG path."""
    path = os.path.join(run_dir, "metrics.json")
    if not os.path.isfile(path):
        raise UserError(f"No metrics.json in '{run_dir}': give the folder of a training run.")
    with open(path, encoding="utf-8") as f:
        metrics = json.load(f)
    return plot_curves(metrics.get("epochs", []), metrics.get("evaluations", []),
                       os.path.join(run_dir, "curves.png"))


# ---------------------------------------------------------------------------------- CLI
def build_parsers() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The command line of ``python -m tools.visualize``: the top-level parser and the parser
    of each command."""
    parser = argparse.ArgumentParser(prog="python -m tools.visualize",
                                     description="Pictures of a trained re-ID model.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (("ranks", "ranked gallery lists of a few queries"),
                            ("attention", "attention maps of one tracklet")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--config_file", default="", metavar="FILE")
        if name == "ranks":
            p.add_argument("--num-queries", type=int, default=8)
            p.add_argument("--topk", type=int, default=10)
        else:
            p.add_argument("--tracklet", type=int, default=0, help="index in the split")
            p.add_argument("--split", choices=("query", "gallery", "train"), default="query")
        p.add_argument("opts", nargs="*", metavar="KEY VALUE",
                       help="config overrides, e.g. TEST.WEIGHT path/to/model.pth")
    p = sub.add_parser("curves", help="training curves of a run folder")
    p.add_argument("run_dir")
    p = sub.add_parser("architecture", help="diagram of the model of a config")
    p.add_argument("--config_file", default="", metavar="FILE",
                   help=f"default: {DEFAULT_ARCH_CONFIG}")
    p.add_argument("--out", default="", metavar="PATH",
                   help=f"default: OUTPUT_DIR/{ARCH_FILE} (output/{ARCH_FILE} when empty)")
    p.add_argument("--num-classes", type=int, default=None, metavar="N",
                   help="training identities (default: the standard split of DATASETS.NAME)")
    p.add_argument("opts", nargs="*", metavar="KEY VALUE",
                   help="config overrides, e.g. MODEL.NAME resnet18")
    return parser, dict(sub.choices)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command, then its options anywhere among the ``KEY VALUE`` overrides."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, commands = build_parsers()
    if not argv or argv[0] not in commands:
        return parser.parse_args(argv)                            # usage error or --help
    args = parse_command_line(commands[argv[0]], argv[1:])
    args.command = argv[0]
    return args


@run_cli
def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (2 for user errors)."""
    setup_logger("reid")
    args = parse_args(argv)
    if args.command == "curves":
        print(visualize_curves(args.run_dir))
    elif args.command == "architecture":
        print(visualize_architecture(args.config_file, args.opts, args.out or None,
                                     args.num_classes))
    elif args.command == "ranks":
        for p in visualize_ranks(args.config_file, args.opts, args.num_queries, args.topk):
            print(p)
    else:
        print(visualize_attention(args.config_file, args.opts, args.tracklet, args.split))
    return 0


if __name__ == "__main__":
    sys.exit(main())
