"""Pictures of a trained model: ranked retrieval lists, attention maps and training curves.

    python -m utils.visualize ranks --config_file FILE [--num-queries N --topk K] TEST.WEIGHT PATH
    python -m utils.visualize attention --config_file FILE [--tracklet I --split query] \
        TEST.WEIGHT PATH
    python -m utils.visualize curves RUN_DIR
    python -m utils.visualize architecture [--config_file FILE] [--out PATH] [--num-classes N] \
        [KEY VALUE ...]

Pictures go under OUTPUT_DIR, or the folder of TEST.WEIGHT when OUTPUT_DIR is not given; the
architecture diagram of a config (default configs/mars_aitl.yml) goes to --out (default
display_images/architecture.png) and needs no checkpoint or dataset.
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
from PIL import Image, ImageDraw, ImageFont  # noqa: E402

from utils.errors import UserError, run_cli  # noqa: E402

logger = logging.getLogger("reid.visualize")

CELL_H, CELL_W = 128, 64       # size of one frame in the pictures
BORDER = 4
GREEN, RED, GREY = (40, 170, 60), (210, 40, 40), (150, 150, 150)
MIN_HEAT_RANGE = 0.05           # attention rows with a smaller range are drawn on [0, 1]


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
def _font(size: int, mono: bool = False) -> ImageFont.ImageFont:
    """Matplotlib's DejaVu font at ``size`` pixels (PIL's bitmap font if it cannot be read)."""
    name = "DejaVuSansMono.ttf" if mono else "DejaVuSans.ttf"
    try:
        return ImageFont.truetype(os.path.join(matplotlib.get_data_path(), "fonts", "ttf", name),
                                  size)
    except OSError:
        return ImageFont.load_default()


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
    model = build_model(cfg, dataset.num_train_pids, dataset.attr_lens, load_pretrained=False)
    load_model_weights(model, state)
    model.to(device).eval()
    # Pictures go under OUTPUT_DIR when it is given on the command line, else beside the
    # checkpoint (the trained run's folder).
    given = "OUTPUT_DIR" in opts[0::2] and cfg.OUTPUT_DIR
    out_dir = cfg.OUTPUT_DIR if given else os.path.dirname(os.path.abspath(cfg.TEST.WEIGHT))
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
    font, small = _font(12), _font(11)
    draw.text((2, 2), f"query: id {query[1]}, cam {query[2] + 1}", fill=(0, 0, 0), font=font)
    for i, p in enumerate(q_frames):
        canvas.paste(_frame(p), (i * CELL_W, top + BORDER))
    x = len(q_frames) * CELL_W + gap
    first = matches.index(True) if True in matches else -1
    for r, (trk, d, ok) in enumerate(zip(ranked, distances, matches)):
        draw.rectangle([x, top, x + CELL_W + 2 * BORDER - 1, top + CELL_H + 2 * BORDER - 1],
                       fill=GREEN if ok else RED)
        canvas.paste(_frame(trk[0][len(trk[0]) // 2]), (x + BORDER, top + BORDER))
        label = f"{r + 1}: {d:.3f}" + (" *" if r == first else "")
        draw.text((x, 2), label, fill=GREEN if r == first else (0, 0, 0), font=font)
        draw.text((x, top + CELL_H + 2 * BORDER + 1), f"id {trk[1]} c{trk[2] + 1}",
                  fill=(60, 60, 60), font=small)
        x += CELL_W + 2 * BORDER + 4
    return canvas


def visualize_ranks(cfg_file: str | None, opts: list[str], num_queries: int = 8,
                    topk: int = 10) -> list[str]:
    """Write one PNG per query (``<out>/ranks/query_XXXX.png``); returns their paths."""
    from engine.evaluator import clips_per_batch, extract_features
    from utils.metrics import compute_distance_matrix

    cfg, device, dataset, query_loader, gallery_loader, model, out_dir = _load(cfg_file, opts)
    chunk = clips_per_batch(cfg, device)
    q = extract_features(model, query_loader, device, chunk,
                         cfg.TEST.TEMPORAL_POOL_METHOD)
    g = extract_features(model, gallery_loader, device, chunk,
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
def _overlay(frame: Image.Image, heat: np.ndarray, lo: float, hi: float) -> Image.Image:
    """Blend a (h, w) map over a frame as a jet heat map, scaled so that [lo, hi] -> [0, 1]."""
    heat = np.clip((heat - lo) / max(hi - lo, 1e-8), 0.0, 1.0)
    colored = (matplotlib.colormaps["jet"](heat)[..., :3] * 255).astype(np.uint8)
    colored = Image.fromarray(colored).resize(frame.size, Image.BILINEAR)
    return Image.blend(frame, colored, 0.45)


def attribute_lines(names: list[str], groups: list[int], classes: list[int], pred, truth
                    ) -> list[tuple[str, tuple[int, int, int]]]:
    """The attribute table of the attention figure: ``(text, colour)`` per line.

    Values are the class indices of the attribute CSV (the schemas name no values); a wrong
    prediction is red, an unknown truth (-1, e.g. distractors) is written "?" in grey.

    Args:
        names: attribute names in CSV order.
        groups: number of attributes in each group (ID-irrelevant, ID-relevant).
        classes: class count of each attribute.
        pred, truth: predicted and true class index of each attribute.
    """
    width = max(len(n) for n in names) + 1
    lines = [("attributes: pred / truth", (0, 0, 0)),
             ("(class index; red: wrong)", (90, 90, 90))]
    titles = ["ID-irrelevant (A1 stream)", "ID-relevant (A2 stream)"]
    start = 0
    for g, n in enumerate(groups):
        lines.append(("", (0, 0, 0)))
        lines.append((titles[g] if len(groups) == 2 else "attributes", (0, 0, 0)))
        for i in range(start, start + n):
            p = int(pred[i])
            t = int(truth[i]) if i < len(truth) else -1
            text = f"{names[i]:<{width}}{p:>2} / {str(t) if t >= 0 else '?':<2} of {classes[i]}"
            color = (120, 120, 120) if t < 0 else (0, 0, 0) if p == t else RED
            lines.append((text, color))
        start += n
    return lines


def visualize_attention(cfg_file: str | None, opts: list[str], tracklet: int = 0,
                        split: str = "query") -> str:
    """Frames of one tracklet with the identity and attribute attention maps; returns the PNG.

    One row per stream; each row's maps share one colour scale (the row's minimum to maximum
    over the T frames, written under the row's name), so the temporal weighting stays visible;
    a row whose maps are (nearly) constant is drawn on the absolute [0, 1] scale instead of
    magnifying noise, and labelled "uniform".
    """
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
    _, pid, camid, truth = tracks[tracklet]
    rows = [(f"{split} #{tracklet}\nid {pid}, cam {camid + 1}", None)] + [
        (k, v) for k, v in (("identity (TA)", maps.get("identity")),
                            ("ID-irrelevant\nattributes (A1)", maps.get("unrelated")),
                            ("ID-relevant\nattributes (A2)", maps.get("related")))
        if v is not None]
    lines = []
    if attr_logits is not None and dataset.attr_lens is not None:
        flat = [n for grp in dataset.attr_lens for n in grp]
        logits = torch.cat([a.float() for a in attr_logits], dim=1)
        pred = decode_flat_attr_logits(logits, flat)[0]
        lines = attribute_lines(dataset.attr_names, [len(g) for g in dataset.attr_lens], flat,
                                pred, truth)
    font, small, mono = _font(13), _font(11), _font(12, mono=True)
    line_h = 17
    label_w = 130
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_w = int(max(measure.textlength(t, font=mono) for t, _ in lines)) + 16 if lines else 0
    width = label_w + len(paths) * CELL_W + text_w
    height = max(len(rows) * (CELL_H + 6) + 6, 10 + len(lines) * line_h)
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    frames = [_frame(p) for p in paths]
    for r, (name, amap) in enumerate(rows):
        y = 6 + r * (CELL_H + 6)
        draw.multiline_text((6, y + CELL_H // 2 - 16), name, fill=(0, 0, 0), font=font,
                            spacing=3)
        if amap is not None:
            heat = amap[0].float().cpu().numpy()                   # (T, h, w)
            lo, hi = float(heat.min()), float(heat.max())
            uniform = hi - lo < MIN_HEAT_RANGE   # (nearly) constant: show it on [0, 1]
            ends = [f"uniform {(lo + hi) / 2:.3f}"] if uniform else [f"{lo:.2f}", f"{hi:.2f}"]
            if uniform:
                lo, hi = 0.0, 1.0
            bar = matplotlib.colormaps["jet"](np.linspace(0, 1, 60))[None, :, :3] * 255
            bar_y = y + CELL_H // 2 + 24
            canvas.paste(Image.fromarray(bar.astype(np.uint8)).resize((60, 8)), (6, bar_y))
            draw.text((6, bar_y + 10), ends[0], fill=(90, 90, 90), font=small)
            if len(ends) == 2:                   # the row's maximum, under the bar's end
                draw.text((66 - draw.textlength(ends[1], font=small), bar_y + 10), ends[1],
                          fill=(90, 90, 90), font=small)
        for t, fr in enumerate(frames):
            img = fr if amap is None else _overlay(fr, heat[t], lo, hi)
            canvas.paste(img, (label_w + t * CELL_W, y))
    x_text = label_w + len(paths) * CELL_W + 10
    for i, (text, color) in enumerate(lines):
        draw.text((x_text, 8 + i * line_h), text, fill=color, font=mono)
    folder = os.path.join(out_dir, "attention")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{split}_{tracklet:04d}.png")
    canvas.save(path)
    logger.info("Wrote %s", path)
    return path


# ---------------------------------------------------------------------------------- architecture
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_ARCH_CONFIG = os.path.join("configs", "mars_aitl.yml")
DEFAULT_ARCH_OUT = os.path.join("display_images", "architecture.png")
# training identities of each dataset's standard split (the classifier's width)
TRAIN_IDS = {"mars": 625, "duke": 702, "ilidsvid": 150, "prid": 100}
ARCH_SIZE = (14, 7)            # inches; 1400 x 700 px at 100 dpi


def describe_architecture(cfg, num_classes: int | None = None) -> dict:
    """Build the config's model on the CPU and read its real shapes.

    The backbone map, the attention maps, the feature and the logits come from one forward
    pass of a dummy clip (1, T, 3, H, W) in eval mode; layer widths from the layers themselves.

    Args:
        cfg: the config (MODEL.*, INPUT.SIZE_TRAIN, DATASETS.NAME/SEQ_LEN/ATTRIBUTE_LOSS, ...).
        num_classes: training identities; default: the standard split of DATASETS.NAME.

    Returns:
        dict of the names, shapes and numbers the diagram writes.
    """
    from data.attributes import SCHEMAS
    from modeling import build_model

    name = cfg.DATASETS.NAME
    schema = SCHEMAS.get(name)
    if num_classes is None:
        num_classes = TRAIN_IDS.get(name, 625)
    model = build_model(cfg, num_classes, schema.attr_lens if schema else None,
                        load_pretrained=False).eval()
    t = cfg.DATASETS.SEQ_LEN
    h_in, w_in = (int(v) for v in cfg.INPUT.SIZE_TRAIN)
    seen = {}
    hook = model.base.register_forward_hook(lambda m, i, o: seen.__setitem__("F", o.shape))
    try:
        with torch.no_grad():
            clip = torch.zeros(1, t, 3, h_in, w_in)
            feat, attr_logits = model(clip)
            maps = model.forward_attention(clip)
    finally:
        hook.remove()
    _, c, h, w = seen["F"]
    info = {
        "config": cfg, "dataset": name, "backbone": cfg.MODEL.NAME,
        "last_stride": cfg.MODEL.LAST_STRIDE, "T": t, "H": h_in, "W": w_in,
        "C": int(c), "h": int(h), "w": int(w), "fusion": model.fusion_method,
        "feat_dim": int(feat.shape[1]), "num_classes": model.classifier.out_features,
        "neck": model.neck, "neck_feat": model.neck_feat, "attr_mode": None,
        "params": sum(p.numel() for p in model.parameters()) / 1e6,
        "id_map": None if maps["identity"] is None else tuple(maps["identity"].shape[-2:]),
    }
    if model.attr_on:
        mode = model.attribute_loss
        sizes = [len(g) for g in model.attr_lens]
        widths = [int(a.shape[1]) for a in attr_logits]
        if mode == "mce":                       # one head per attribute, in CSV order
            widths = [sum(widths[:sizes[0]]), sum(widths[sizes[0]:])]
        streams = [model.multi_attr_recoger1, model.multi_attr_recoger2]
        info.update(
            attr_mode=mode, group_sizes=sizes, group_widths=widths,
            group_names=[list(g) for g in schema.groups],
            stream_mid=streams[0].conv.out_channels,
            positions=(streams[0].attention_t_conv.in_channels if mode == "bce" else None),
            attr_map=tuple(maps["unrelated"].shape[-2:]))
    return info


def _shape(*dims) -> str:
    return "(" + ", ".join(str(d) for d in dims) + ")"


def _box(ax, x0: float, y0: float, x1: float, y1: float, title: str, lines: list[str],
         color: str, fontsize: float = 8.5) -> None:
    """A rounded box with a bold title and centred lines of text."""
    from matplotlib.patches import FancyBboxPatch

    ax.add_patch(FancyBboxPatch((x0, y0), x1 - x0, y1 - y0, fc=color, ec="0.3", lw=0.9,
                                boxstyle="round,pad=0,rounding_size=0.8"))
    rows = [title, *lines]
    step = fontsize * 1.32 / 72 * 100 / 10             # line height in axis units (10 px)
    top = (y0 + y1) / 2 + step * (len(rows) - 1) / 2
    for i, text in enumerate(rows):
        ax.text((x0 + x1) / 2, top - i * step, text, ha="center", va="center",
                fontsize=fontsize, fontweight="bold" if i == 0 else "normal")


def _arrow(ax, points: list[tuple[float, float]], style: str = "-", color: str = "0.2",
           label: str | None = None, label_at: int = 0, rotation: float = 0) -> None:
    """A polyline through ``points`` with an arrow head at the last point."""
    xs, ys = zip(*points)
    if len(points) > 2:
        ax.plot(xs[:-1], ys[:-1], ls=style, color=color, lw=1.3, solid_capstyle="butt")
    ax.annotate("", xy=points[-1], xytext=points[-2],
                arrowprops=dict(arrowstyle="-|>", color=color, lw=1.3, ls=style,
                                shrinkA=0, shrinkB=0, mutation_scale=11))
    if label:
        (xa, ya), (xb, yb) = points[label_at], points[label_at + 1]
        ax.text((xa + xb) / 2, (ya + yb) / 2, label, ha="center", va="center", fontsize=7.5,
                color=color, rotation=rotation, bbox=dict(fc="white", ec="none", pad=0.6))


def draw_architecture(info: dict, out_path: str, config_name: str = "") -> str:
    """Draw the model described by :func:`describe_architecture` to a 1400x700 PNG."""
    c, h, w, t = info["C"], info["h"], info["w"], info["T"]
    d, n_ids = info["feat_dim"], info["num_classes"]
    attr = info["attr_mode"]
    blue, green, red, grey = "#d6e6f5", "#dcefd6", "#f7d4d4", "#e6e6e6"
    detach_col, pick_col = "#7a7a7a", "#8a3ab9"

    fig = plt.figure(figsize=ARCH_SIZE, dpi=100)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, 140)
    ax.set_ylim(0, 70)
    ax.axis("off")
    title = ", ".join([f"Model of {config_name or 'the config'}: {info['backbone']}",
                       f"{info['fusion']} fusion"]
                      + ([f"attribute streams ({attr})"] if attr else [])
                      + [f"{info['params']:.1f} M parameters"])
    ax.text(70, 67.6, title, ha="center", va="center", fontsize=11.5, fontweight="bold")

    # notation (top left)
    notes = [f"B clips of T = {t} frames, {info['H']}x{info['W']} pixels",
             f"F: backbone map, C = {c}, h x w = {h} x {w}",
             f"{n_ids} training identities ({info['dataset']})",
             "shapes read from a forward pass"]
    for i, s in enumerate(notes):
        ax.text(1.5, 61.5 - 2.3 * i, s, fontsize=8, va="center", color="0.25")

    # input and backbone
    _box(ax, 1.5, 31.5, 14, 45.5, "input clip", ["(B, T, 3, H, W)", _shape("B", t, 3, info["H"],
                                                                           info["W"])], grey)
    stride = f"last stride {info['last_stride']}"
    _box(ax, 17.5, 30, 31, 47, "backbone", [info["backbone"], stride, "F:", _shape("B*T", c, h, w)],
         grey)
    _arrow(ax, [(14, 38.5), (17.5, 38.5)])
    ax.text(15.75, 36.2, "fold T", ha="center", fontsize=7, color="0.3")

    # identity stream (middle row, y 33..44)
    y0, y1, ym = 33, 44, 38.5
    fusion = info["fusion"]
    if fusion == "baseline":
        _box(ax, 35, y0, 48.5, y1, "no attention", ["(baseline)", "F' = F"], blue)
    else:
        _box(ax, 35, y0, 48.5, y1, "attention (TA)",
             [f"3x3 conv {c}->1", f"sigmoid: A {_shape(*info['id_map'])}", "F' = A*F"], blue)
    if fusion == "ATTR_TA":
        _box(ax, 51, y0, 71.5, y1, "ATTR_TA fusion + pooling",
             ["concat(F', A1*F', A2*F')", _shape("B*T", 3 * c, h, w),
              "avg over h, w; mean over T"], blue)
    else:
        _box(ax, 51, y0, 71.5, y1, "pooling", [_shape("B*T", c, h, w) + " F'",
                                               "avg over h, w; mean over T"], blue)
    _box(ax, 74, y0, 84.5, y1, "global feat. f",
         [_shape("B", d)] + (["(before BN)"] if info["neck"] == "bnneck" else []), blue)
    if info["neck"] == "bnneck":
        test = "test feature" if info["neck_feat"] == "after" else ""
        _box(ax, 87, y0, 97, y1, "BNNeck", ["BatchNorm1d", f"({d})", test], blue)
        cls_lines = ["Linear, no bias", f"{d} -> {n_ids}"]
    else:
        _box(ax, 87, y0, 97, y1, "no neck", ["f is the", "test feature"], blue)
        cls_lines = ["Linear", f"{d} -> {n_ids}"]
    _box(ax, 99.5, y0, 110, y1, "ID classifier", cls_lines, blue)
    for xa, xb in ((31, 35), (48.5, 51), (71.5, 74), (84.5, 87), (97, 99.5)):
        _arrow(ax, [(xa, ym), (xb, ym)])

    # losses (right column)
    lx0, lx1 = 112.5, 139.5
    cfg = info["config"]
    smooth = "label smoothing 0.1" if cfg.MODEL.IF_LABELSMOOTH == "on" else "no label smoothing"
    _box(ax, lx0, 35, lx1, 42, "ID loss: cross entropy", [smooth], red)
    _arrow(ax, [(110, ym), (lx0, ym)])
    _box(ax, lx0, 25.5, lx1, 31.5, "batch-hard triplet on f",
         [f"{cfg.DISTANCE} distance, margin {cfg.SOLVER.MARGIN:g}"], red)
    _arrow(ax, [(77.5, y0), (77.5, 28.5), (lx0, 28.5)])

    # legend and total loss (bottom left)
    total = ["total = ID + triplet"]
    if attr:
        total = ["total = ID + (triplet + AITL1 + AITL2) / 3",
                 "          + " + ("BCE1 + BCE2" if attr == "bce" else "mean attribute CE")]
    if cfg.SOLVER.USE_CENTER_LOSS:
        total[-1] += " + center"
    if attr and fusion == "ATTR_TA":
        total += ["A1, A2 are not detached in the fusion:",
                  "the re-ID losses train the attention layers"]
    legend = [("-", "0.2", "forward (gradients flow back)"),
              ("--", detach_col, "F.detach(): attribute losses stop here"),
              (":", pick_col, "attribute logits pick the AITL positives")]
    for i, (ls, col, text) in enumerate(legend if attr else legend[:1]):
        y = 24 - 3.2 * i
        _arrow(ax, [(1.5, y), (6.5, y)], style=ls, color=col)
        ax.text(7.5, y, text, fontsize=8, va="center")
    ax.text(1.5, 13.2, "loss:", fontsize=8.5, fontweight="bold", va="center")
    for i, line in enumerate(total):
        ax.text(1.5, 10.8 - 2.2 * i - (0.8 if i >= 2 else 0), line, fontsize=8, va="center")

    if attr:
        groups = info["group_names"]
        for g, (yc, label) in enumerate(((58, "ID-irrelevant"), (9, "ID-relevant"))):
            sy0, sy1 = yc - 5.5, yc + 5.5
            n_attr, width = info["group_sizes"][g], info["group_widths"][g]
            k = g + 1
            examples = ", ".join(groups[g][:3]) + ", ..."
            if attr == "bce":
                att_lines = [f"1x1 conv {c}->{c}, BN, ReLU; 3x3 conv ->1",
                             f"Conv1d over T ({info['positions']} positions, k 3), sigmoid",
                             f"A{k}: " + _shape("B", t, 1, *info["attr_map"])]
                head_lines = [f"A{k}-weighted pooling of F, mean T, ReLU",
                              f"Linear {c} -> {width}: logits (B, {width})"]
                loss = ("attribute loss: BCE", f"{width} one-hots of {n_attr} attributes")
            else:
                mid = info["stream_mid"]
                att_lines = [f"1x1 conv {c}->{mid}, BN, ReLU", f"{n_attr} x (1x1 conv -> 1 map, "
                             "sigmoid)", f"A{k}: learnt weighted sum of the {n_attr} maps"]
                head_lines = [f"{n_attr} heads: weighted pooling, mean T",
                              f"Linear {mid} -> n_k; together (B, {width})"]
                loss = ("attribute loss: cross entropy", f"per attribute, mean of {n_attr}")
            _box(ax, 35, sy0, 63.5, sy1, f"{label} attribute stream (ASTA)", att_lines,
                 green, 8)
            _box(ax, 66.5, sy0, 92, sy1, "attribute head", head_lines, green, 8)
            _box(ax, lx0, yc - 4.5, lx1, yc + 4.5, loss[0],
                 [examples, loss[1]], red, 8)
            _arrow(ax, [(63.5, yc), (66.5, yc)])
            _arrow(ax, [(92, yc), (lx0, yc)])
            # F.detach() into the stream
            yin = yc + (1 if g == 0 else -1) * 1.5
            ys = 44 if g == 0 else 33
            _arrow(ax, [(31, ys), (33, ys), (33, yin), (35, yin)], style="--",
                   color=detach_col, label="F.detach()", label_at=1, rotation=90)
            # AITL of this group
            ay0, ay1 = (45.5, 51.5) if g == 0 else (16.5, 22.5)
            f_y, pick_y = (47, 50) if g == 0 else (21, 18)
            _box(ax, lx0, ay0, lx1, ay1, f"AITL{k} on f ({label} attributes)",
                 ["max(0, d(f, far positive) - d(f, near positive))",
                  f"far / near in {label} attribute logits"], red, 7.5)
            _arrow(ax, [(81, y1 if g == 0 else y0), (81, f_y), (lx0, f_y)])
            _arrow(ax, [(89, sy0 if g == 0 else sy1), (89, pick_y), (lx0, pick_y)], style=":",
                   color=pick_col)
            # the stream's attention map into the fusion
            if fusion == "ATTR_TA":
                xa = 60
                _arrow(ax, [(xa, sy0 if g == 0 else sy1), (xa, y1 if g == 0 else y0)],
                       label=f"A{k}", label_at=0)
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return out_path


def visualize_architecture(cfg_file: str | None, opts: list[str], out_path: str | None = None,
                           num_classes: int | None = None) -> str:
    """Diagram of the config's model (default configs/mars_aitl.yml); returns the PNG path."""
    from config import load_cfg

    cfg_file = cfg_file or os.path.join(REPO_ROOT, DEFAULT_ARCH_CONFIG)
    cfg = load_cfg(cfg_file, opts)
    info = describe_architecture(cfg, num_classes)
    out_path = out_path or os.path.join(REPO_ROOT, DEFAULT_ARCH_OUT)
    path = draw_architecture(info, out_path, os.path.relpath(cfg_file, REPO_ROOT)
                             if os.path.abspath(cfg_file).startswith(REPO_ROOT) else cfg_file)
    logger.info("Wrote %s", path)
    return path


# ---------------------------------------------------------------------------------- CLI
def build_parsers() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The command line of ``python -m utils.visualize``: the top-level parser and the parser
    of each command."""
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
        p.add_argument("opts", nargs="*", metavar="KEY VALUE",
                       help="config overrides, e.g. TEST.WEIGHT path/to/model.pth")
    p = sub.add_parser("curves", help="training curves of a run folder")
    p.add_argument("run_dir")
    p = sub.add_parser("architecture", help="diagram of the model of a config")
    p.add_argument("--config_file", default="", metavar="FILE",
                   help=f"default: {DEFAULT_ARCH_CONFIG}")
    p.add_argument("--out", default="", metavar="PATH", help=f"default: {DEFAULT_ARCH_OUT}")
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
    from engine.defaults import parse_command_line

    args = parse_command_line(commands[argv[0]], argv[1:])
    args.command = argv[0]
    return args


@run_cli
def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (2 for user errors)."""
    from utils.logger import setup_logger

    setup_logger("reid")
    args = parse_args(argv)
    if args.command == "curves":
        print(plot_curves(args.run_dir))
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
