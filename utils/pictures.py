"""Drawing primitives: records, tracklets, heat maps and model descriptions in, PNG out.

Pure functions that know nothing of configs, datasets or models (``tools.visualize`` gathers
the data). matplotlib is imported only inside the functions that draw with it, so importing
this module does not load it; figures are drawn by the Agg canvas without pyplot, which
leaves the backend the user chose alone.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

CELL_H, CELL_W = 128, 64        # size of one frame in the pictures
BORDER = 4
GREEN, RED = (40, 170, 60), (210, 40, 40)
UNKNOWN_GREY = (120, 120, 120)  # attribute lines whose truth is unknown
MIN_HEAT_RANGE = 0.05           # attention rows with a smaller range are drawn on [0, 1]
CURVES_SIZE = (15, 4)           # inches; 1500 x 400 px at 100 dpi
ARCH_SIZE = (14, 7)             # inches; 1400 x 700 px at 100 dpi


# ---------------------------------------------------------------------------------- helpers
def _figure(figsize: tuple[float, float], layout: str | None = None):
    """A matplotlib ``Figure`` on its own Agg canvas (no pyplot, no global backend change)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=100, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def _save(picture, out_path: str) -> str:
    """Write a matplotlib figure (at 100 dpi) or a PIL image to ``out_path``, creating its
    folder; returns the path."""
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    if isinstance(picture, Image.Image):
        picture.save(out_path)
    else:
        picture.savefig(out_path, dpi=100)
    return out_path


def _font(size: int, mono: bool = False) -> ImageFont.ImageFont:
    """Matplotlib's DejaVu font at ``size`` pixels (PIL's bitmap font if it cannot be read)."""
    import matplotlib

    name = "DejaVuSansMono.ttf" if mono else "DejaVuSans.ttf"
    try:
        return ImageFont.truetype(os.path.join(matplotlib.get_data_path(), "fonts", "ttf", name),
                                  size)
    except OSError:
        return ImageFont.load_default()


def _jet(values: np.ndarray) -> np.ndarray:
    """The jet colour map of ``values`` in [0, 1] as uint8 RGB (shape ``values.shape + (3,)``)."""
    import matplotlib

    return (matplotlib.colormaps["jet"](values)[..., :3] * 255).astype(np.uint8)


def _frame(path: str) -> Image.Image:
    """The image at ``path`` as an RGB cell of CELL_W x CELL_H pixels."""
    return Image.open(path).convert("RGB").resize((CELL_W, CELL_H), Image.BILINEAR)


def pick_frames(paths: Sequence[str], n: int) -> list[str]:
    """``min(n, len(paths))`` frames evenly spread over a tracklet, first and last included."""
    idx = np.linspace(0, len(paths) - 1, num=min(n, len(paths))).round().astype(int)
    return [paths[i] for i in idx]


# ---------------------------------------------------------------------------------- curves
def evaluation_metrics(evaluations: Sequence[Mapping]) -> list[str]:
    """The metrics of metrics.json's "evaluations" records, in first-seen order: every number
    but the epoch (the nested attribute metrics are no curve).

    Example:
        >>> evaluation_metrics([{"epoch": 0, "mAP": 0.1, "R1": 0.2, "attr": {}},
        ...                     {"epoch": 2, "mAP": 0.3, "R1": 0.4, "mINP": 0.05}])
        ['mAP', 'R1', 'mINP']
    """
    keys: dict[str, None] = {}
    for record in evaluations:
        for key, value in record.items():
            if key != "epoch" and isinstance(value, (int, float)) and not isinstance(value, bool):
                keys[key] = None
    return list(keys)


def plot_curves(epochs: Sequence[Mapping], evaluations: Sequence[Mapping], out_path: str) -> str:
    """Three panels: the loss terms, the learning rate and the evaluation metrics (mAP, R1, R5,
    R10, R20: :func:`evaluation_metrics`) over the epochs.

    Args:
        epochs: the "epochs" records of metrics.json (keys "epoch", "lr", "loss_*", "total").
        evaluations: its "evaluations" records (key "epoch" and the metrics as fractions; a
            metric missing from a record is a gap in its curve).
        out_path: the PNG to write (1500 x 400 pixels).

    Returns:
        ``out_path``.
    """
    fig = _figure(CURVES_SIZE, layout="constrained")      # makes room for the loss legend
    ax_loss, ax_lr, ax_eval = axes = fig.subplots(1, 3)
    if epochs:
        x = [e["epoch"] for e in epochs]
        for key in epochs[0]:
            if key.startswith("loss_") or key == "total":
                ax_loss.plot(x, [e[key] for e in epochs], marker=".", label=key)
        ax_lr.plot(x, [e["lr"] for e in epochs], marker=".", color="tab:purple")
        # beside the panel, not over the curves
        ax_loss.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    ax_loss.set(title="training loss terms (weighted)", xlabel="epoch")
    ax_lr.set(title="learning rate", xlabel="epoch", yscale="log" if epochs else "linear")
    if evaluations:
        x = [e["epoch"] for e in evaluations]
        for key in evaluation_metrics(evaluations):
            ax_eval.plot(x, [100 * e.get(key, float("nan")) for e in evaluations], marker="o",
                         label=key)
        ax_eval.legend(fontsize=8)
    ax_eval.set(title="evaluation", xlabel="epoch", ylabel="%", ylim=(0, 100))
    for ax in axes:
        ax.grid(alpha=0.3)
    return _save(fig, out_path)


# ---------------------------------------------------------------------------------- ranks
def draw_ranked_list(query: tuple, ranked: Sequence[tuple], distances: Sequence[float],
                     matches: Sequence[bool], out_path: str, frames_per_query: int = 4) -> str:
    """One row: a few frames of the query tracklet, then the top-k gallery tracklets.

    Each gallery tracklet shows its middle frame in a border, green when it has the query's
    identity and red otherwise; the first correct match is starred.

    Args:
        query: the query tracklet, a tuple starting ``(img_paths, pid, camid, ...)``.
        ranked: the top-k gallery tracklets in rank order (same layout).
        distances: their distances to the query.
        matches: whether each has the query's identity.
        out_path: the PNG to write.
        frames_per_query: query frames shown, evenly spread over the tracklet.

    Returns:
        ``out_path``.
    """
    q_frames = pick_frames(query[0], frames_per_query)
    gap, top, step = 20, 18, CELL_W + 2 * BORDER + 4
    width = len(q_frames) * CELL_W + gap + len(ranked) * step
    canvas = Image.new("RGB", (width, CELL_H + 2 * BORDER + top + 16), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    font, small = _font(12), _font(11)
    draw.text((2, 2), f"query: id {query[1]}, cam {query[2] + 1}", fill=(0, 0, 0), font=font)
    for i, p in enumerate(q_frames):
        canvas.paste(_frame(p), (i * CELL_W, top + BORDER))
    first = list(matches).index(True) if True in matches else -1
    for r, (trk, d, ok) in enumerate(zip(ranked, distances, matches)):
        x = len(q_frames) * CELL_W + gap + r * step
        draw.rectangle([x, top, x + CELL_W + 2 * BORDER - 1, top + CELL_H + 2 * BORDER - 1],
                       fill=GREEN if ok else RED)
        canvas.paste(_frame(trk[0][len(trk[0]) // 2]), (x + BORDER, top + BORDER))
        label = f"{r + 1}: {d:.3f}" + (" *" if r == first else "")
        draw.text((x, 2), label, fill=GREEN if r == first else (0, 0, 0), font=font)
        draw.text((x, top + CELL_H + 2 * BORDER + 1), f"id {trk[1]} c{trk[2] + 1}",
                  fill=(60, 60, 60), font=small)
    return _save(canvas, out_path)


# ---------------------------------------------------------------------------------- attention
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
            color = UNKNOWN_GREY if t < 0 else (0, 0, 0) if p == t else RED
            lines.append((text, color))
        start += n
    return lines


def _overlay(frame: Image.Image, heat: np.ndarray, lo: float, hi: float) -> Image.Image:
    """Blend a (h, w) map over a frame as a jet heat map, scaled so that [lo, hi] -> [0, 1]."""
    heat = np.clip((heat - lo) / max(hi - lo, 1e-8), 0.0, 1.0)
    colored = Image.fromarray(_jet(heat)).resize(frame.size, Image.BILINEAR)
    return Image.blend(frame, colored, 0.45)


def _heat_scale(heat: np.ndarray) -> tuple[float, float, list[str]]:
    """The colour scale of one row of maps: ``(lo, hi, labels under the colour bar)``.

    The row's minimum to maximum, or [0, 1] labelled "uniform" when the maps are (nearly)
    constant, so that noise is not magnified.
    """
    lo, hi = float(heat.min()), float(heat.max())
    if hi - lo < MIN_HEAT_RANGE:
        return 0.0, 1.0, [f"uniform {(lo + hi) / 2:.3f}"]
    return lo, hi, [f"{lo:.2f}", f"{hi:.2f}"]


def _draw_colour_bar(canvas: Image.Image, y: int, labels: list[str]) -> None:
    """A 60 x 8 jet bar at (6, y) with the scale's ends (or its one label) written under it."""
    draw, small, grey = ImageDraw.Draw(canvas), _font(11), (90, 90, 90)
    bar = Image.fromarray(_jet(np.linspace(0, 1, 60))[None]).resize((60, 8))
    canvas.paste(bar, (6, y))
    draw.text((6, y + 10), labels[0], fill=grey, font=small)
    if len(labels) == 2:                         # the row's maximum, under the bar's end
        draw.text((66 - draw.textlength(labels[1], font=small), y + 10), labels[1], fill=grey,
                  font=small)


def draw_attention(frame_paths: Sequence[str], rows: Sequence[tuple[str, np.ndarray | None]],
                   lines: Sequence[tuple[str, tuple[int, int, int]]], out_path: str) -> str:
    """The frames of a clip once per row, each row overlaid with one stream's attention maps.

    Each row's maps share one colour scale (the row's minimum to maximum over the T frames,
    written under the row's name), so the temporal weighting stays visible; a row whose maps
    are (nearly) constant is drawn on the absolute [0, 1] scale and labelled "uniform".

    Args:
        frame_paths: the T frames of the clip.
        rows: ``(label, maps)`` per row; maps a (T, h, w) array, or None for the plain frames.
        lines: ``(text, colour)`` lines written right of the frames (:func:`attribute_lines`).
        out_path: the PNG to write.

    Returns:
        ``out_path``.
    """
    font, mono = _font(13), _font(12, mono=True)
    line_h, label_w = 17, 130
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_w = int(max(measure.textlength(t, font=mono) for t, _ in lines)) + 16 if lines else 0
    width = label_w + len(frame_paths) * CELL_W + text_w
    height = max(len(rows) * (CELL_H + 6) + 6, 10 + len(lines) * line_h)
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    frames = [_frame(p) for p in frame_paths]
    for r, (name, heat) in enumerate(rows):
        y = 6 + r * (CELL_H + 6)
        draw.multiline_text((6, y + CELL_H // 2 - 16), name, fill=(0, 0, 0), font=font,
                            spacing=3)
        if heat is not None:
            lo, hi, labels = _heat_scale(heat)
            _draw_colour_bar(canvas, y + CELL_H // 2 + 24, labels)
        for t, fr in enumerate(frames):
            img = fr if heat is None else _overlay(fr, heat[t], lo, hi)
            canvas.paste(img, (label_w + t * CELL_W, y))
    x_text = label_w + len(frames) * CELL_W + 10
    for i, (text, color) in enumerate(lines):
        draw.text((x_text, 8 + i * line_h), text, fill=color, font=mono)
    return _save(canvas, out_path)


# ---------------------------------------------------------------------------------- architecture
# Box colours: grey input/backbone, blue identity stream, green attribute streams, red losses;
# arrow colours of the detached attribute input and of the AITL positive picking.
_BOX_BLUE, _BOX_GREEN, _BOX_RED, _BOX_GREY = "#d6e6f5", "#dcefd6", "#f7d4d4", "#e6e6e6"
_DETACH_COLOUR, _PICK_COLOUR = "#7a7a7a", "#8a3ab9"
# The diagram's layout, in axis units (140 x 70): the identity row's bottom, top and middle,
# and the left and right edges of the loss column.
_ID_Y0, _ID_Y1, _ID_YM = 33, 44, 38.5
_LOSS_X0, _LOSS_X1 = 112.5, 139.5


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


def _draw_header(ax, info: Mapping, config_name: str) -> None:
    """The title (top centre) and the notation (top left)."""
    attr = info["attr_mode"]
    title = ", ".join([f"Model of {config_name or 'the config'}: {info['backbone']}",
                       f"{info['fusion']} fusion"]
                      + ([f"attribute streams ({attr})"] if attr else [])
                      + [f"{info['params']:.1f} M parameters"])
    ax.text(70, 67.6, title, ha="center", va="center", fontsize=11.5, fontweight="bold")
    notes = [f"B clips of T = {info['T']} frames, {info['H']}x{info['W']} pixels",
             f"F: backbone map, C = {info['C']}, h x w = {info['h']} x {info['w']}",
             f"{info['num_classes']} training identities ({info['dataset']})",
             "shapes read from a forward pass"]
    for i, s in enumerate(notes):
        ax.text(1.5, 61.5 - 2.3 * i, s, fontsize=8, va="center", color="0.25")


def _draw_input_and_backbone(ax, info: Mapping) -> None:
    """The input clip and the backbone (left), folding T into the batch."""
    _box(ax, 1.5, 31.5, 14, 45.5, "input clip",
         ["(B, T, 3, H, W)", _shape("B", info["T"], 3, info["H"], info["W"])], _BOX_GREY)
    _box(ax, 17.5, 30, 31, 47, "backbone",
         [info["backbone"], f"last stride {info['last_stride']}", "F:",
          _shape("B*T", info["C"], info["h"], info["w"])], _BOX_GREY)
    _arrow(ax, [(14, 38.5), (17.5, 38.5)])
    ax.text(15.75, 36.2, "fold T", ha="center", fontsize=7, color="0.3")


def _draw_identity_stream(ax, info: Mapping) -> None:
    """The middle row: attention, fusion and pooling, the feature, the neck, the classifier."""
    c, h, w, d, n_ids = info["C"], info["h"], info["w"], info["feat_dim"], info["num_classes"]
    y0, y1 = _ID_Y0, _ID_Y1
    if info["fusion"] == "baseline":
        _box(ax, 35, y0, 48.5, y1, "no attention", ["(baseline)", "F' = F"], _BOX_BLUE)
    else:
        _box(ax, 35, y0, 48.5, y1, "attention (TA)",
             [f"3x3 conv {c}->1", f"sigmoid: A {_shape(*info['id_map'])}", "F' = A*F"], _BOX_BLUE)
    if info["fusion"] == "ATTR_TA":
        _box(ax, 51, y0, 71.5, y1, "ATTR_TA fusion + pooling",
             ["concat(F', A1*F', A2*F')", _shape("B*T", 3 * c, h, w),
              "avg over h, w; mean over T"], _BOX_BLUE)
    else:
        _box(ax, 51, y0, 71.5, y1, "pooling",
             [_shape("B*T", c, h, w) + " F'", "avg over h, w; mean over T"], _BOX_BLUE)
    bnneck = info["neck"] == "bnneck"
    _box(ax, 74, y0, 84.5, y1, "global feat. f",
         [_shape("B", d)] + (["(before BN)"] if bnneck else []), _BOX_BLUE)
    if bnneck:
        test = "test feature" if info["neck_feat"] == "after" else ""
        _box(ax, 87, y0, 97, y1, "BNNeck", ["BatchNorm1d", f"({d})", test], _BOX_BLUE)
    else:
        _box(ax, 87, y0, 97, y1, "no neck", ["f is the", "test feature"], _BOX_BLUE)
    _box(ax, 99.5, y0, 110, y1, "ID classifier",
         ["Linear, no bias" if bnneck else "Linear", f"{d} -> {n_ids}"], _BOX_BLUE)
    for xa, xb in ((31, 35), (48.5, 51), (71.5, 74), (84.5, 87), (97, 99.5)):
        _arrow(ax, [(xa, _ID_YM), (xb, _ID_YM)])


def _draw_reid_losses(ax, info: Mapping) -> None:
    """The ID loss on the logits and the triplet loss on f (right column)."""
    smooth = "label smoothing 0.1" if info["label_smooth"] else "no label smoothing"
    _box(ax, _LOSS_X0, 35, _LOSS_X1, 42, "ID loss: cross entropy", [smooth], _BOX_RED)
    _arrow(ax, [(110, _ID_YM), (_LOSS_X0, _ID_YM)])
    _box(ax, _LOSS_X0, 25.5, _LOSS_X1, 31.5, "batch-hard triplet on f",
         [f"{info['distance']} distance, margin {info['margin']:g}"], _BOX_RED)
    _arrow(ax, [(77.5, _ID_Y0), (77.5, 28.5), (_LOSS_X0, 28.5)])


def loss_labels(attr_mode: str | None) -> dict[str, str]:
    """The diagram's names of the criterion's terms (the keys of ``layers.ReidCriterion.terms``),
    for ``ReidCriterion.formula``: the names of the loss boxes."""
    return {"loss_id": "ID", "loss_triplet": "triplet", "loss_aitl_unrelated": "AITL1",
            "loss_aitl_related": "AITL2",
            "loss_attr": "BCE1 + BCE2" if attr_mode == "bce" else "mean attribute CE",
            "loss_center": "center"}


def formula_lines(formula: str, width: int = 48) -> list[str]:
    """``formula`` cut at its ``" + "`` outside parentheses into lines of at most ``width``
    characters (a longer piece keeps a line of its own); later lines start with ``"+"``,
    indented."""
    pieces, depth, start = [], 0, 0
    for i, char in enumerate(formula):
        depth += (char == "(") - (char == ")")
        if depth == 0 and formula.startswith(" + ", i):
            pieces.append(formula[start:i])
            start = i + 3
    pieces.append(formula[start:])
    lines = [pieces[0]]
    for piece in pieces[1:]:
        if len(lines[-1]) + 3 + len(piece) <= width:
            lines[-1] += " + " + piece
        else:
            lines.append("          + " + piece)
    return lines


def _draw_legend_and_total(ax, info: Mapping) -> None:
    """The arrow legend and the total loss (bottom left)."""
    attr = info["attr_mode"]
    total = formula_lines(info["loss_formula"])
    notes = (["A1, A2 are not detached in the fusion:",
              "the re-ID losses train the attention layers"]
             if attr and info["fusion"] == "ATTR_TA" else [])
    legend = [("-", "0.2", "forward (gradients flow back)"),
              ("--", _DETACH_COLOUR, "F.detach(): attribute losses stop here"),
              (":", _PICK_COLOUR, "attribute logits pick the AITL positives")]
    for i, (ls, col, text) in enumerate(legend if attr else legend[:1]):
        y = 24 - 3.2 * i
        _arrow(ax, [(1.5, y), (6.5, y)], style=ls, color=col)
        ax.text(7.5, y, text, fontsize=8, va="center")
    ax.text(1.5, 13.2, "loss:", fontsize=8.5, fontweight="bold", va="center")
    for i, line in enumerate(total + notes):
        ax.text(1.5, 10.8 - 2.2 * i - (0.8 if i >= len(total) else 0), line, fontsize=8,
                va="center")


def _attribute_texts(info: Mapping, g: int) -> tuple[list[str], list[str], tuple[str, str]]:
    """The lines of attribute stream ``g``'s boxes: (attention, head, (loss title, line))."""
    c, t, k = info["C"], info["T"], g + 1
    n_attr, width = info["group_sizes"][g], info["group_widths"][g]
    if info["attr_mode"] == "bce":
        attention = [f"1x1 conv {c}->{c}, BN, ReLU; 3x3 conv ->1",
                     f"Conv1d over T ({info['positions']} positions, k 3), sigmoid",
                     f"A{k}: " + _shape("B", t, 1, *info["attr_map"])]
        head = [f"A{k}-weighted pooling of F, mean T, ReLU",
                f"Linear {c} -> {width}: logits (B, {width})"]
        return attention, head, ("attribute loss: BCE", f"{width} one-hots of {n_attr} attributes")
    mid = info["stream_mid"]
    attention = [f"1x1 conv {c}->{mid}, BN, ReLU", f"{n_attr} x (1x1 conv -> 1 map, sigmoid)",
                 f"A{k}: learnt weighted sum of the {n_attr} maps"]
    head = [f"{n_attr} heads: weighted pooling, mean T",
            f"Linear {mid} -> n_k; together (B, {width})"]
    return attention, head, ("attribute loss: cross entropy", f"per attribute, mean of {n_attr}")


def _draw_attribute_stream(ax, info: Mapping, g: int) -> None:
    """Attribute stream ``g`` (0: ID-irrelevant above the identity row, 1: ID-relevant below),
    its head, its attribute loss and AITL, and their arrows."""
    upper = g == 0
    yc, label = (58, "ID-irrelevant") if upper else (9, "ID-relevant")
    sy0, sy1, k = yc - 5.5, yc + 5.5, g + 1
    attention, head, loss = _attribute_texts(info, g)
    examples = ", ".join(info["group_names"][g][:3]) + ", ..."
    _box(ax, 35, sy0, 63.5, sy1, f"{label} attribute stream (ASTA)", attention, _BOX_GREEN, 8)
    _box(ax, 66.5, sy0, 92, sy1, "attribute head", head, _BOX_GREEN, 8)
    _box(ax, _LOSS_X0, yc - 4.5, _LOSS_X1, yc + 4.5, loss[0], [examples, loss[1]], _BOX_RED, 8)
    _arrow(ax, [(63.5, yc), (66.5, yc)])
    _arrow(ax, [(92, yc), (_LOSS_X0, yc)])
    # F.detach() into the stream
    yin, ys = (yc + 1.5, _ID_Y1) if upper else (yc - 1.5, _ID_Y0)
    _arrow(ax, [(31, ys), (33, ys), (33, yin), (35, yin)], style="--", color=_DETACH_COLOUR,
           label="F.detach()", label_at=1, rotation=90)
    # AITL of this group: f from the identity row, positives picked by the attribute logits
    ay0, ay1 = (45.5, 51.5) if upper else (16.5, 22.5)
    f_y, pick_y = (47, 50) if upper else (21, 18)
    _box(ax, _LOSS_X0, ay0, _LOSS_X1, ay1, f"AITL{k} on f ({label} attributes)",
         ["max(0, d(f, far positive) - d(f, near positive))",
          f"far / near in {label} attribute logits"], _BOX_RED, 7.5)
    _arrow(ax, [(81, _ID_Y1 if upper else _ID_Y0), (81, f_y), (_LOSS_X0, f_y)])
    _arrow(ax, [(89, sy0 if upper else sy1), (89, pick_y), (_LOSS_X0, pick_y)], style=":",
           color=_PICK_COLOUR)
    if info["fusion"] == "ATTR_TA":              # the stream's attention map into the fusion
        _arrow(ax, [(60, sy0 if upper else sy1), (60, _ID_Y1 if upper else _ID_Y0)],
               label=f"A{k}", label_at=0)


def draw_architecture(info: Mapping, out_path: str, config_name: str = "") -> str:
    """Draw a model description to a 1400 x 700 PNG.

    Args:
        info: the model's names, shapes and numbers (``tools.architecture.describe_architecture``):
            "dataset", "backbone", "last_stride", "T", "H", "W", "C", "h", "w", "fusion",
            "feat_dim", "num_classes", "neck", "neck_feat", "params" (millions), "id_map"
            (h, w) or None, "label_smooth", "distance", "margin", "center_loss",
            "loss_formula" (the criterion's ``formula(loss_labels(attr_mode))``), "attr_mode"
            ("bce", "mce" or None) and, with attributes, "group_sizes", "group_widths",
            "group_names", "stream_mid", "positions" (bce) and "attr_map" (h, w).
        out_path: the PNG to write (its folder is created).
        config_name: how the title names the config.

    Returns:
        ``out_path``.
    """
    fig = _figure(ARCH_SIZE)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, 140)
    ax.set_ylim(0, 70)
    ax.axis("off")
    _draw_header(ax, info, config_name)
    _draw_input_and_backbone(ax, info)
    _draw_identity_stream(ax, info)
    _draw_reid_losses(ax, info)
    _draw_legend_and_total(ax, info)
    if info["attr_mode"]:
        for g in (0, 1):
            _draw_attribute_stream(ax, info, g)
    return _save(fig, out_path)
