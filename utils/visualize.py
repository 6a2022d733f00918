"""Pictures of a trained model: ranked retrieval lists, attention maps and training curves.

    python -m utils.visualize ranks --config_file FILE [--num-queries N --topk K] TEST.WEIGHT PATH
    python -m utils.visualize attention --config_file FILE [--tracklet I --split query] \
        TEST.WEIGHT PATH
    python -m utils.visualize curves RUN_DIR

Pictures go under OUTPUT_DIR, or the folder of TEST.WEIGHT when OUTPUT_DIR is not given.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from utils.errors import UserError  # noqa: E402

logger = logging.getLogger("reid.visualize")

CELL_H, CELL_W = 128, 64       # size of one frame in the pictures
BORDER = 4
GREEN, RED, GREY = (40, 170, 60), (210, 40, 40), (150, 150, 150)


# ---------------------------------------------------------------------------------- curves
def plot_curves(run_dir: str, out_path: str | None = None) -> str:
    """Plot loss terms, learning rate and R1/mAP from ``run_dir/metrics.json`` to ``curves.png``.

    Returns:
        The path of the PNG written.
    """
    path = os.path.join(run_dir, "metrics.json")
    if not os.path.isfile(path):
        raise UserError(f"No metrics.json in '{run_dir}': give the folder of a training run.")
    with open(path, encoding="utf-8") as f:
        metrics = json.load(f)
    epochs, evals = metrics.get("epochs", []), metrics.get("evaluations", [])
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    ax_loss, ax_lr, ax_eval = axes
    if epochs:
        x = [e["epoch"] for e in epochs]
        for key in epochs[0]:
            if key.startswith("loss_") or key == "total":
                ax_loss.plot(x, [e[key] for e in epochs], marker=".", label=key)
        ax_lr.plot(x, [e["lr"] for e in epochs], marker=".", color="tab:purple")
    ax_loss.set(title="training loss terms (weighted)", xlabel="epoch")
    ax_loss.legend(fontsize=8)
    ax_lr.set(title="learning rate", xlabel="epoch", yscale="log" if epochs else "linear")
    if evals:
        x = [e["epoch"] for e in evals]
        for key in ("R1", "R5", "mAP"):
            ax_eval.plot(x, [100 * e[key] for e in evals], marker="o", label=key)
    ax_eval.set(title="evaluation", xlabel="epoch", ylabel="%", ylim=(0, 100))
    ax_eval.legend(fontsize=8)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    out_path = out_path or os.path.join(run_dir, "curves.png")
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return out_path


# ---------------------------------------------------------------------------------- helpers
def _frame(path: str) -> Image.Image:
    return Image.open(path).convert("RGB").resize((CELL_W, CELL_H), Image.BILINEAR)


def _pick_frames(paths: tuple, n: int) -> list[str]:
    idx = np.linspace(0, len(paths) - 1, num=min(n, len(paths))).round().astype(int)
    return [paths[i] for i in idx]


def _load(cfg_file: str | None, opts: list[str]):
    """Config, device, dataset, loaders and the model loaded from TEST.WEIGHT."""
    from config import load_cfg
    from data import make_data_loaders
    from modeling import build_model, load_model_weights
    from utils.checkpoint import load_file
    from utils.comm import resolve_device

    cfg = load_cfg(cfg_file, opts, freeze=False)
    if not cfg.TEST.WEIGHT:
        raise UserError("No checkpoint given: add TEST.WEIGHT path/to/checkpoint.pth after the "
                        "options (a trained run's rank1_*.pth or checkpoint_ep*.pth).")
    state = load_file(cfg.TEST.WEIGHT)
    cfg.DATALOADER.NUM_WORKERS = min(cfg.DATALOADER.NUM_WORKERS, 2)
    cfg.freeze()
    device, _ = resolve_device(cfg.MODEL.DEVICE, cfg.MODEL.DEVICE_ID)
    _, query_loader, gallery_loader, dataset = make_data_loaders(cfg)
    model = build_model(cfg, dataset.num_train_pids, dataset.attr_lens)
    load_model_weights(model, state)
    model.to(device).eval()
    out_dir = cfg.OUTPUT_DIR or os.path.dirname(os.path.abspath(cfg.TEST.WEIGHT))
    return cfg, device, dataset, query_loader, gallery_loader, model, out_dir


# ---------------------------------------------------------------------------------- ranks
def render_ranked_list(query: tuple, ranked: list[tuple], distances: list[float],
                       matches: list[bool], frames_per_query: int = 4) -> Image.Image:
    """One row: a few frames of the query tracklet, then the top-k gallery tracklets.

    Args:
        query: the query tracklet ``(img_paths, pid, camid, attributes)``.
        ranked: the top-k gallery tracklets in rank order.
        distances: their distances to the query.
        matches: whether each has the query's identity (green border) or not (red).
    """
    q_frames = _pick_frames(query[0], frames_per_query)
    k = len(ranked)
    gap = 20
    top = 18
    width = len(q_frames) * CELL_W + gap + k * (CELL_W + 2 * BORDER + 4)
    canvas = Image.new("RGB", (width, CELL_H + 2 * BORDER + top + 16), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    draw.text((2, 2), f"query id {query[1]} cam {query[2] + 1}", fill=(0, 0, 0))
    for i, p in enumerate(q_frames):
        canvas.paste(_frame(p), (i * CELL_W, top + BORDER))
    x = len(q_frames) * CELL_W + gap
    first = matches.index(True) if True in matches else -1
    for r, (trk, d, ok) in enumerate(zip(ranked, distances, matches)):
        draw.rectangle([x, top, x + CELL_W + 2 * BORDER - 1, top + CELL_H + 2 * BORDER - 1],
                       fill=GREEN if ok else RED)
        canvas.paste(_frame(trk[0][len(trk[0]) // 2]), (x + BORDER, top + BORDER))
        label = f"{r + 1}: {d:.3f}" + (" *" if r == first else "")
        draw.text((x, 2), label, fill=GREEN if r == first else (0, 0, 0))
        draw.text((x, top + CELL_H + 2 * BORDER + 2), f"id {trk[1]} c{trk[2] + 1}",
                  fill=(60, 60, 60))
        x += CELL_W + 2 * BORDER + 4
    return canvas


def visualize_ranks(cfg_file: str | None, opts: list[str], num_queries: int = 8,
                    topk: int = 10) -> list[str]:
    """Write one PNG per query (``<out>/ranks/query_XXXX.png``); returns their paths."""
    from engine.evaluator import extract_features
    from utils.metrics import compute_distance_matrix

    cfg, device, dataset, query_loader, gallery_loader, model, out_dir = _load(cfg_file, opts)
    q = extract_features(model, query_loader, device, cfg.TEST.CLIPS_PER_BATCH,
                         cfg.TEST.TEMPORAL_POOL_METHOD)
    g = extract_features(model, gallery_loader, device, cfg.TEST.CLIPS_PER_BATCH,
                         cfg.TEST.TEMPORAL_POOL_METHOD)
    qf, gf = q["feats"], g["feats"]
    if cfg.TEST.FEAT_NORM == "yes":
        qf, gf = torch.nn.functional.normalize(qf, dim=1), torch.nn.functional.normalize(gf, dim=1)
    dist = compute_distance_matrix(qf, gf, cfg.DISTANCE).cpu().numpy()
    folder = os.path.join(out_dir, "ranks")
    os.makedirs(folder, exist_ok=True)
    picks = np.linspace(0, len(dataset.query) - 1, num=min(num_queries, len(dataset.query)))
    written = []
    for qi in picks.round().astype(int):
        order = np.argsort(dist[qi], kind="stable")
        # the evaluation protocol: same identity seen by the same camera is not a retrieval
        keep = ~((g["pids"][order] == q["pids"][qi]) & (g["camids"][order] == q["camids"][qi]))
        order = order[keep][:topk]
        img = render_ranked_list(dataset.query[qi], [dataset.gallery[j] for j in order],
                                 dist[qi, order].tolist(),
                                 (g["pids"][order] == q["pids"][qi]).tolist())
        path = os.path.join(folder, f"query_{qi:04d}.png")
        img.save(path)
        written.append(path)
    logger.info("Wrote %d ranked lists to %s", len(written), folder)
    return written


# ---------------------------------------------------------------------------------- attention
def _overlay(frame: Image.Image, heat: np.ndarray) -> Image.Image:
    """Blend a (h, w) map in [0, 1] over a frame as a jet heat map."""
    heat = (heat - heat.min()) / max(float(heat.max() - heat.min()), 1e-8)
    colored = (matplotlib.colormaps["jet"](heat)[..., :3] * 255).astype(np.uint8)
    colored = Image.fromarray(colored).resize(frame.size, Image.BILINEAR)
    return Image.blend(frame, colored, 0.45)


def visualize_attention(cfg_file: str | None, opts: list[str], tracklet: int = 0,
                        split: str = "query") -> str:
    """Frames of one tracklet with the identity and attribute attention maps; returns the PNG."""
    from data.transforms import build_transforms
    from engine.evaluator import decode_flat_attr_logits

    cfg, device, dataset, *_, model, out_dir = _load(cfg_file, opts)
    tracks = getattr(dataset, split)
    if not 0 <= tracklet < len(tracks):
        raise UserError(f"--tracklet {tracklet} is out of range: the {split} set has "
                        f"{len(tracks)} tracklets.")
    paths = _pick_frames(tracks[tracklet][0], cfg.DATASETS.SEQ_LEN)
    while len(paths) < cfg.DATASETS.SEQ_LEN:
        paths.append(paths[len(paths) % len(paths)])
    transform = build_transforms(cfg, is_train=False)
    clip = transform([Image.open(p).convert("RGB") for p in paths]).unsqueeze(0).to(device)
    with torch.no_grad():
        maps = model.forward_attention(clip)
        _, attr_logits = model(clip)
    rows = [("frames", None)] + [(k, v) for k, v in (("identity", maps.get("identity")),
                                                     ("ID-irrelevant attr.", maps.get("unrelated")),
                                                     ("ID-relevant attr.", maps.get("related")))
                                 if v is not None]
    text_w = 230
    label_w = 120
    width = label_w + len(paths) * CELL_W + text_w
    canvas = Image.new("RGB", (width, len(rows) * (CELL_H + 6) + 6), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    frames = [_frame(p) for p in paths]
    for r, (name, amap) in enumerate(rows):
        y = 6 + r * (CELL_H + 6)
        draw.text((4, y + CELL_H // 2), name, fill=(0, 0, 0))
        for t, fr in enumerate(frames):
            img = fr if amap is None else _overlay(fr, amap[0, t].float().cpu().numpy())
            canvas.paste(img, (label_w + t * CELL_W, y))
    if attr_logits is not None and dataset.attr_lens is not None:
        flat = [n for grp in dataset.attr_lens for n in grp]
        logits = torch.cat([a.float() for a in attr_logits], dim=1)
        pred = decode_flat_attr_logits(logits, flat)[0]
        truth = tracks[tracklet][3]
        lines = ["predicted attributes (truth):"]
        for name, p, t in zip(dataset.attr_names, pred, truth):
            lines.append(f"{name}: {int(p)} ({int(t)})")
        draw.multiline_text((label_w + len(paths) * CELL_W + 8, 6), "\n".join(lines),
                            fill=(0, 0, 0), spacing=1)
    folder = os.path.join(out_dir, "attention")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{split}_{tracklet:04d}.png")
    canvas.save(path)
    logger.info("Wrote %s", path)
    return path


# ---------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m utils.visualize``."""
    parser = argparse.ArgumentParser(description="Pictures of a trained re-ID model.")
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
        p.add_argument("opts", nargs=argparse.REMAINDER, metavar="KEY VALUE",
                       help="config overrides, e.g. TEST.WEIGHT path/to/model.pth")
    p = sub.add_parser("curves", help="training curves of a run folder")
    p.add_argument("run_dir")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (2 for user errors)."""
    from utils.logger import setup_logger

    setup_logger("reid")
    args = build_parser().parse_args(argv)
    try:
        if args.command == "curves":
            print(plot_curves(args.run_dir))
        elif args.command == "ranks":
            for p in visualize_ranks(args.config_file, args.opts, args.num_queries, args.topk):
                print(p)
        else:
            print(visualize_attention(args.config_file, args.opts, args.tracklet, args.split))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
