"""Rendering of synthetic frames: camera scenes, person figures, clutter, occluders, noise.

A person is a simple figure drawn from its attribute classes (clothes colours, sleeve and
trouser length, dress, bags, backpack, hat, hair, gender, age) and its identity-specific
details (print, skin and hair tone, accessory colours, proportions); shapes are soft
(anti-aliased) and composited in painter's order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tools.synthetic.plan import N_CLUTTER, N_SCENE_BOXES, PANORAMA

__all__ = ["TOP_PALETTE", "appearance", "camera_scenes", "draw_person", "render_chunk"]

# black, white, red, purple, yellow, gray, blue, green, brown
TOP_PALETTE = np.array(
    [[0.08, 0.08, 0.09], [0.92, 0.92, 0.90], [0.80, 0.12, 0.12], [0.50, 0.20, 0.62],
     [0.93, 0.82, 0.15], [0.52, 0.52, 0.54], [0.15, 0.30, 0.80], [0.15, 0.60, 0.22],
     [0.50, 0.32, 0.16]], dtype=np.float32)
# black, white, purple, yellow, gray, blue, green, brown, pink, red (Duke uses the first 8)
_BOTTOM_PALETTE = np.array(
    [[0.07, 0.07, 0.08], [0.90, 0.90, 0.88], [0.45, 0.18, 0.55], [0.90, 0.80, 0.20],
     [0.48, 0.48, 0.50], [0.18, 0.28, 0.65], [0.18, 0.50, 0.22], [0.45, 0.30, 0.15],
     [0.95, 0.55, 0.70], [0.75, 0.10, 0.12]], dtype=np.float32)
_AGE_HEIGHT = np.array([0.70, 0.86, 1.0, 0.96], dtype=np.float32)
_NOISE = 0.025  # sensor noise standard deviation


def appearance(p: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Add the looks that follow from attribute classes to the person table ``p`` (F rows).

    Returns:
        ``p`` plus ``top_rgb``, ``bottom_rgb``, ``hair_rgb``, ``shoe_rgb`` (F, 3) and the
        figure's relative ``height`` and ``width`` (F,).
    """
    rows = np.arange(len(p["age"]))
    elderly = (p["age"] == 3)[:, None]
    return {
        **p,
        "top_rgb": np.clip(TOP_PALETTE[p["top_color"]] + p["top_jitter"], 0, 1),
        "bottom_rgb": np.clip(_BOTTOM_PALETTE[p["bottom_color"]] + p["bottom_jitter"], 0, 1),
        "hair_rgb": np.where(elderly, p["gray_hair"][:, None], p["hair_base_rgb"]),
        "shoe_rgb": p["shoe_levels"][rows, p["light_shoes"], None] * p["shoe_tint"],
        "height": _AGE_HEIGHT[p["age"]] * p["height_jitter"],
        "width": np.where(p["gender"] == 1, 0.88, 1.0).astype(np.float32) * p["width_jitter"],
    }


def camera_scenes(rng: np.random.Generator, cams: dict[str, np.ndarray],
                  size: tuple[int, int]) -> np.ndarray:
    """Static wide scene of every camera: walls, floor, structures, coarse texture.

    Args:
        rng: the dataset's generator (draws the texture).
        cams: camera table of :func:`tools.synthetic.plan.sample_cameras`.
        size: (H, W) of a frame.

    Returns:
        (n_cams, H, PANORAMA * W, 3) float32 in [0, 1].
    """
    h, w = size
    pw = PANORAMA * w
    n = len(cams["scale"])
    y = (np.arange(h, dtype=np.float32)[:, None] + 0.5) / h  # (H, 1)
    x = (np.arange(pw, dtype=np.float32)[None, :] + 0.5) / pw  # (1, PW)
    segment = (x[None, :, :, None] >= cams["wall_edges"][:, None, None, :]).sum(-1)  # (n,1,PW)
    wall = cams["wall_rgb"][np.arange(n)[:, None, None], segment]  # (n, 1, PW, 3)
    floor = (y[None] > cams["horizon"][:, None, None])[..., None]  # (n, H, 1, 1)
    shade = 1.0 - 0.25 * y[None, :, :, None]
    scene = np.where(floor, cams["floor_rgb"][:, None, None], wall) * shade  # (n, H, PW, 3)
    b = cams["boxes"]  # (n, K, 4): x, y of a corner, width, height (fractions)
    x0, y0 = b[..., 0], b[..., 1] * 0.8
    x1, y1 = x0 + (0.1 + 0.4 * b[..., 2]) / PANORAMA, y0 + 0.1 + 0.5 * b[..., 3]
    inside = ((x[None, None] >= x0[..., None, None]) & (x[None, None] < x1[..., None, None])
              & (y[None, None] >= y0[..., None, None]) & (y[None, None] < y1[..., None, None]))
    for k in range(N_SCENE_BOXES):  # painter's order over a handful of boxes
        scene = np.where(inside[:, k, ..., None], cams["box_rgb"][:, k, None, None], scene)
    coarse = rng.uniform(-0.04, 0.04, (n, h // 4 + 1, pw // 4 + 1, 3)).astype(np.float32)
    scene += coarse.repeat(4, axis=1).repeat(4, axis=2)[:, :h, :pw]
    return np.clip(scene, 0.0, 1.0).astype(np.float32)


def _composite(img: np.ndarray, alpha: np.ndarray, rgb: np.ndarray) -> None:
    """In place ``img = img * (1 - alpha) + alpha * rgb``; alpha (F, H, W), rgb (F, 3) or
    (F, H, W, 3)."""
    rows = np.flatnonzero(alpha.max(axis=(0, 2)) > 0)
    cols = np.flatnonzero(alpha.max(axis=(0, 1)) > 0)
    if not len(rows) or not len(cols):
        return
    box = (slice(None), slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    rgb = rgb[:, None, None, :] if rgb.ndim == 2 else rgb[box]
    diff = rgb - img[box]  # composite the bounding box of the shape only
    diff *= alpha[box][..., None]
    img[box] += diff


class _Figure:
    """Soft (anti-aliased) shapes in a person's body coordinates for a chunk of frames.

    Body coordinates: ``lx`` horizontal from the body axis (mirrored by ``mirror``), ``ly``
    down from the top of the head, both in units of the figure height ``hp`` in pixels.
    """

    def __init__(self, size: tuple[int, int], cx: np.ndarray, top: np.ndarray, hp: np.ndarray,
                 mirror: np.ndarray) -> None:
        h, w = size
        px = (np.arange(w, dtype=np.float32) + 0.5)[None, None, :]
        py = (np.arange(h, dtype=np.float32) + 0.5)[None, :, None]
        self.hp = hp[:, None, None]  # (F, 1, 1)
        self.lx = (px - cx[:, None, None]) / self.hp * mirror[:, None, None]  # (F, 1, W)
        self.ly = (py - top[:, None, None]) / self.hp  # (F, H, 1)

    def _alpha(self, signed_distance: np.ndarray) -> np.ndarray:
        return np.clip(signed_distance * self.hp + 0.5, 0.0, 1.0)

    def box(self, x0, x1, y0, y1) -> np.ndarray:
        """Axis-aligned box; bounds are scalars or (F,) arrays in body units."""
        x0, x1, y0, y1 = (_col(v) for v in (x0, x1, y0, y1))
        return self._alpha(np.minimum(np.minimum(self.lx - x0, x1 - self.lx),
                                      np.minimum(self.ly - y0, y1 - self.ly)))

    def ellipse(self, x, y, rx, ry) -> np.ndarray:
        """Ellipse centred at (x, y) with radii (rx, ry)."""
        x, y = _col(x), _col(y)
        d = np.sqrt(((self.lx - x) / rx) ** 2 + ((self.ly - y) / ry) ** 2)
        return self._alpha((1.0 - d) * min(rx, ry))

    def limb(self, x, y, angle, start, end, width) -> np.ndarray:
        """Segment [start, end] along a limb hanging from (x, y), rotated by ``angle`` (F,)."""
        x, y, angle, start, end = (_col(v) for v in (x, y, angle, start, end))
        dx, dy = self.lx - x, self.ly - y
        sin, cos = np.sin(angle), np.cos(angle)
        along = dx * sin + dy * cos
        across = np.abs(dx * cos - dy * sin)
        return self._alpha(np.minimum(np.minimum(along - start, end - along),
                                      width / 2 - across))

    def skirt(self, top, length, half_top, half_bottom) -> np.ndarray:
        """Trapezoid from ``top`` down ``length``, half widths growing downwards."""
        top, length = _col(top), _col(length)
        half = _col(half_top) + (_col(half_bottom) - _col(half_top)) * (self.ly - top) / length
        return self._alpha(np.minimum(np.minimum(self.ly - top, top + length - self.ly),
                                      half - np.abs(self.lx)))


def _col(v) -> np.ndarray | float:
    """(F,) arrays become (F, 1, 1) for broadcasting against (F, H, W); scalars stay."""
    return v[:, None, None] if isinstance(v, np.ndarray) else v


# ----------------------------------------------------------------------------------------------
# Person figures
# ----------------------------------------------------------------------------------------------
_Paint = Callable[..., None]  # paint(alpha (F, H, W), rgb (F, 3) or (F, H, W, 3), gate (F,))


@dataclass
class _Body:
    """A chunk of F figures: looks, shapes, view gates and body measures (all per frame)."""

    p: dict[str, np.ndarray]  # the people rows with their looks (appearance)
    fig: _Figure
    on: np.ndarray  # (F,) ones
    front: np.ndarray  # (F,) 1.0 where seen from the front
    back: np.ndarray
    side: np.ndarray
    yes: dict[str, np.ndarray]  # (F,) 1.0 where the person has the binary trait
    tw: np.ndarray  # half torso width
    leg_x: np.ndarray  # hip joints
    arm_x: np.ndarray  # shoulder joints
    swing: np.ndarray  # leg swing angle


def _body(size: tuple[int, int], people: dict[str, np.ndarray], idx: np.ndarray,
          cx: np.ndarray, foot: np.ndarray, height: np.ndarray, mirror: np.ndarray,
          view: np.ndarray, width: np.ndarray, swing: np.ndarray) -> _Body:
    """The :class:`_Body` of people rows ``idx`` (F,) >= 0, placed by the per-frame values."""
    on = np.ones(len(idx), np.float32)
    p = appearance({k: v[idx] for k, v in people.items()})
    hp = height * p["height"]
    front, back, side = (((view == v) * on).astype(np.float32) for v in (0, 1, 2))
    yes = {k: p[k].astype(np.float32) * on for k in (
        "hair", "backpack", "shoulder_bag", "hand_bag", "hat", "boots", "bottom_type")}
    tw = 0.115 * p["width"] * width
    return _Body(p=p, fig=_Figure(size, cx, foot - hp, hp, mirror), on=on, front=front,
                 back=back, side=side, yes=yes, tw=tw,
                 leg_x=0.05 * p["width"] * np.where(view == 2, 0.15, 1.0), arm_x=tw + 0.026,
                 swing=swing)


def _painter(img: np.ndarray, on: np.ndarray) -> _Paint:
    """``paint(alpha, rgb, gate=on)``: composite a shape onto the frames where ``gate`` > 0."""

    def paint(alpha: np.ndarray, rgb: np.ndarray, gate: np.ndarray = on) -> None:
        rows = np.flatnonzero(gate)
        if len(rows) == len(gate):
            _composite(img, alpha * gate[:, None, None], rgb)
        elif len(rows):  # a part that few frames show: composite those frames only
            sub = img[rows]
            _composite(sub, alpha[rows] * gate[rows, None, None], rgb[rows])
            img[rows] = sub

    return paint


def _paint_behind(paint: _Paint, b: _Body) -> None:
    """Behind the body: long hair, backpack seen from the side."""
    p, fig = b.p, b.fig
    paint(fig.box(-0.068, 0.068, 0.05, 0.27), p["hair_rgb"], b.yes["hair"] * (1 - b.back))
    paint(fig.box(-b.tw - 0.085, -b.tw + 0.01, 0.2, 0.46), p["pack_rgb"],
          b.yes["backpack"] * b.side)


def _paint_limbs(paint: _Paint, b: _Body) -> None:
    """Arms (sleeve over skin) and legs (trousers over skin, shoes or boots)."""
    p, fig, swing = b.p, b.fig, b.swing
    sleeve = np.where(p["top_length"] == 1, 0.27, 0.09)
    trousers = np.where(p["bottom_type"] == 1, 0.0,
                        np.where(p["bottom_length"] == 1, 0.40, 0.17))
    for sign in (-1.0, 1.0):
        arm_angle = -0.7 * sign * swing + sign * 0.08
        paint(fig.limb(sign * b.arm_x, 0.19, arm_angle, 0.0, 0.31, 0.055), p["skin_rgb"])
        paint(fig.limb(sign * b.arm_x, 0.19, arm_angle, 0.0, sleeve, 0.058), p["top_rgb"])
        leg_x = sign * b.leg_x
        paint(fig.limb(leg_x, 0.52, sign * swing, 0.0, 0.44, 0.075), p["skin_rgb"])
        paint(fig.limb(leg_x, 0.52, sign * swing, 0.0, trousers, 0.077), p["bottom_rgb"])
        paint(fig.limb(leg_x, 0.52, sign * swing, 0.27, 0.46, 0.079), p["boot_rgb"],
              b.yes["boots"])
        paint(fig.limb(leg_x, 0.52, sign * swing, 0.41, 0.47, 0.083), p["shoe_rgb"],
              b.on * (1 - b.yes["boots"]))


def _paint_clothes(paint: _Paint, b: _Body) -> None:
    """Dress or skirt; torso with the identity's print; the logo, on the front only."""
    p, fig, tw = b.p, b.fig, b.tw
    skirt_len = np.where(p["bottom_length"] == 1, 0.36, 0.2)
    paint(fig.skirt(0.5, skirt_len, tw * 0.95, tw * 1.35), p["bottom_rgb"], b.yes["bottom_type"])
    torso = fig.box(-tw, tw, 0.17, 0.535)
    u = 2 * np.pi / _col(p["print_period"])
    phase = _col(p["print_phase"])
    sx, sy = np.sin(fig.lx * u + phase), np.sin(fig.ly * u + phase)
    kind = _col(p["print_kind"])
    pattern = np.where(kind == 1, sy > 0.3, np.where(kind == 2, sx > 0.3,
                                                     (kind == 3) & (sx * sy > 0)))
    top_rgb = p["top_rgb"][:, None, None, :]
    shirt = top_rgb + 0.55 * pattern[..., None] * (p["print_rgb"][:, None, None, :] - top_rgb)
    paint(torso, shirt)
    lx, ly = p["logo_xy"][:, 0], p["logo_xy"][:, 1]
    s = p["logo_size"]
    paint(fig.box(lx - s, lx + s, ly - s, ly + s), p["logo_rgb"],
          p["logo_on"] * (1 - b.back) * b.on)


def _paint_bags(paint: _Paint, b: _Body) -> None:
    """Backpack (straps in front, the pack on the back); shoulder bag (strap across the torso,
    bag at the hip); hand bag at the other hand."""
    p, fig, tw, yes = b.p, b.fig, b.tw, b.yes
    for sign in (-1.0, 1.0):
        paint(fig.box(sign * tw * 0.55 - 0.012, sign * tw * 0.55 + 0.012, 0.17, 0.38),
              p["pack_rgb"] * 0.6, yes["backpack"] * b.front)
    paint(fig.box(-tw * 0.6, tw * 0.6, 0.22, 0.44), p["pack_rgb"], yes["backpack"] * b.back)
    paint(fig.limb(tw * 0.7, 0.17, -0.55, 0.0, 0.36, 0.022), p["bag_rgb"] * 0.7,
          yes["shoulder_bag"] * (1 - b.side))
    paint(fig.box(-tw - 0.075, -tw + 0.015, 0.42, 0.56), p["bag_rgb"], yes["shoulder_bag"])
    paint(fig.box(b.arm_x + 0.005, b.arm_x + 0.085, 0.47, 0.58), p["hand_rgb"],
          yes["hand_bag"])


def _paint_head(paint: _Paint, b: _Body) -> None:
    """Head: face (hair from the back), hair on top, long hair locks, hat."""
    p, fig = b.p, b.fig
    face = fig.ellipse(0.0, 0.095, 0.052, 0.07)
    paint(face, p["skin_rgb"], b.on * (1 - b.back))
    paint(face, p["hair_rgb"], b.back)
    paint(fig.ellipse(0.0, 0.08, 0.056, 0.06) * fig.box(-1.0, 1.0, -1.0, 0.065), p["hair_rgb"])
    for sign in (-1.0, 1.0):
        paint(fig.box(sign * 0.056 - 0.014, sign * 0.056 + 0.014, 0.06, 0.25), p["hair_rgb"],
              b.yes["hair"] * b.front)
    paint(fig.box(-0.06, 0.06, 0.0, 0.045), p["hat_rgb"], b.yes["hat"])
    paint(fig.box(-0.085, 0.085, 0.035, 0.052), p["hat_rgb"] * 0.8, b.yes["hat"])


def draw_person(img: np.ndarray, people: dict[str, np.ndarray], idx: np.ndarray,
                cx: np.ndarray, foot: np.ndarray, height: np.ndarray, mirror: np.ndarray,
                view: np.ndarray, width: np.ndarray, swing: np.ndarray) -> None:
    """Draw person ``idx`` (F,) (-1: nobody) into ``img`` (F, H, W, 3) float32, in place.

    Args:
        img: the frames, float32 in [0, 1].
        people: the people table of :func:`tools.synthetic.plan.sample_people`.
        idx: people row of each frame, -1 for none.
        cx, foot, height: (F,) body axis, foot line and full height (an adult's) in pixels.
        mirror: (F,) -1 or 1, the figure's facing.
        view: (F,) 0 front, 1 back, 2 side.
        width: (F,) torso width factor of the pose.
        swing: (F,) leg swing angle in radians.
    """
    shown = np.flatnonzero(idx >= 0)
    if len(shown) < len(idx):  # draw on the frames that show somebody only
        if len(shown):
            sub = img[shown]
            draw_person(sub, people, idx[shown], cx[shown], foot[shown], height[shown],
                        mirror[shown], view[shown], width[shown], swing[shown])
            img[shown] = sub
        return
    body = _body(img.shape[1:3], people, idx, cx, foot, height, mirror, view, width, swing)
    paint = _painter(img, body.on)
    for part in (_paint_behind, _paint_limbs, _paint_clothes, _paint_bags, _paint_head):
        part(paint, body)


def render_chunk(fp: dict[str, np.ndarray], people: dict[str, np.ndarray],
                 cams: dict[str, np.ndarray], scenes: np.ndarray) -> np.ndarray:
    """Render the frames of ``fp`` to uint8 (F, H, W, 3).

    Args:
        fp: per-frame parameters of :func:`tools.synthetic.plan.frame_parameters` (F entries).
        people: the people table.
        cams: the camera table.
        scenes: the camera scenes of :func:`camera_scenes`, (n_cams, H, PANORAMA * W, 3).
    """
    _, h, pw, _ = scenes.shape
    w = pw // PANORAMA
    cols = (np.arange(w)[None, :] + fp["bg_shift"][:, None]) % pw  # (F, W) window of the scene
    img = scenes[fp["camera"][:, None, None], np.arange(h)[None, :, None], cols[:, None, :]]
    # Clutter: boxes of random colour in front of the scene.
    y = (np.arange(h, dtype=np.float32)[None, :, None] + 0.5) / h
    x = (np.arange(w, dtype=np.float32)[None, None, :] + 0.5) / w
    c = fp["clutter"]
    for k in range(N_CLUTTER):
        x0, y0 = c[:, k, 0, None, None], c[:, k, 1, None, None]
        x1, y1 = x0 + 0.1 + 0.4 * c[:, k, 2, None, None], y0 + 0.05 + 0.3 * c[:, k, 3, None, None]
        inside = (x >= x0) & (x < x1) & (y >= y0) & (y < y1) & fp["clutter_on"][:, k, None, None]
        _composite(img, inside.astype(np.float32), fp["clutter_rgb"][:, k])
    pose = {k: fp[k] for k in ("mirror", "view", "width", "swing")}
    # A second person behind the target (multi-person, wrong target, after a target change).
    draw_person(img, people, fp["second"], fp["cx"] + fp["second_dx"], fp["foot"],
                fp["height"] * 0.97, **pose)
    draw_person(img, people, fp["person"], fp["cx"], fp["foot"], fp["height"], **pose)
    # Occluder: a vertical pole or a horizontal bar over the lower body.
    pos, half = fp["occ_pos"][:, None, None], fp["occ_width"][:, None, None] / 2
    vertical = fp["occ_vertical"][:, None, None]
    occ = np.where(vertical, np.abs(x - pos) < half, y > 1.0 - 2 * half)
    _composite(img, (occ & fp["occluded"][:, None, None]).astype(np.float32), fp["occ_rgb"])
    # Camera illumination and sensor noise.
    cam = fp["camera"]
    img = img * (cams["gain"][cam] * fp["flicker"][:, None])[:, None, None, :]
    img += cams["offset"][cam][:, None, None, :]
    noise = np.random.default_rng(fp["noise_seed"]).normal(0.0, _NOISE, img.shape)
    img += noise.astype(np.float32)
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
