"""Write small synthetic MARS / DukeMTMC-VideoReID datasets in the real on-disk formats.

The images are rendered, not random: every identity is a simple person figure drawn from its
ID-relevant attributes (clothes colours, sleeve and trouser length, dress, bags, backpack, hat,
hair, gender, age) plus identity-specific fine details (a print on the top, skin and hair tone,
accessory colours, body proportions), so identities that share attributes stay separable.
Every tracklet is drawn from its ID-irrelevant attributes (motion, pose, occlusion, cut-out,
a second person, a dominant background, a target change, missing or wrong targets), and every
camera has its own wide scene (each tracklet sees a window of it), illumination (colour cast,
brightness) and viewpoint (scale, shift, flip). The attribute CSV holds exactly the values used
to render, so re-identification and attribute recognition are both learnable, while an
untrained network scores poorly (see the difficulty constants below).

Layouts (SPEC §2):

* MARS: ``bbox_train/<pid4>/<name>.jpg``, ``bbox_test/<pid4>/<name>.jpg`` with names
  ``PPPPCcTttttFfff.jpg``; ``info/train_name.txt`` and ``info/test_name.txt``;
  ``info/tracks_train_info.mat`` (``track_train_info``), ``info/tracks_test_info.mat``
  (``track_test_info``), rows ``[start, end, pid, camid]`` 1-based inclusive into the name
  lists; ``info/query_IDX.mat`` (``query_IDX``, 1-based test rows: as in MARS, the last
  tracklet of each test identity on each camera that shows it twice or more, so every query
  has gallery matches on other cameras); ``mars_attributes.csv``. The test split also holds
  junk tracklets (pid -1, written ``00-1``) and distractors (pid 0), without attribute rows.
* Duke: ``train/``, ``query/``, ``gallery/``, each ``<pid4>/<tracklet4>/PPPP_Cc_Ffff_Xnnnnn.jpg``;
  the gallery folder also holds the query tracklets (one per test identity) and a few
  gallery-only identities; tracklet numbers (folder names) are unique over the dataset, as the
  ``tracklets_id`` column of the real ``duke_attributes.csv``.

Train and test identities are disjoint (half each); an identity's tracklets are spread over
``min(cameras, max(2, tracklets - 1))`` cameras. Tracklet lengths vary by up to a quarter
around ``frames``. A marker file (:data:`MARKER_NAME`) is written last into a temporary sibling
folder that is then renamed, so an interrupted write never looks like a complete dataset.

Example::

    python -m data.synthetic --format mars --out data/mars_synthetic
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.io as sio
from PIL import Image

from utils.errors import UserError, run_cli

__all__ = [
    "DUKE_ATTRIBUTE_COLUMNS",
    "KEY_COLUMNS",
    "MARKER_NAME",
    "MARS_ATTRIBUTE_COLUMNS",
    "main",
    "write_synthetic_dataset",
]

MARKER_NAME = "synthetic_dataset.json"
KEY_COLUMNS = ("person_id", "camera_id", "tracklets_id")
_IRRELEVANT = (
    "motion", "pose", "occlusion", "cut-out", "multi-person", "background-dominant",
    "target-change", "target-miss", "wrong-target",
)
MARS_ATTRIBUTE_COLUMNS = _IRRELEVANT + (
    "top color", "bottom color", "age", "top length", "bottom length", "shoulder bag",
    "backpack", "hat", "hand bag", "hair", "gender", "bottom type",
)
# The real Duke CSV spells "muti-person".
DUKE_ATTRIBUTE_COLUMNS = tuple(c.replace("multi", "muti") for c in _IRRELEVANT) + (
    "backpack", "bag", "handbag", "boots", "gender", "hat", "shoes", "top", "bottom color",
    "top color",
)

# Meaning of the rendered classes (0-based CSV values):
#   motion: walking, running, riding, staying, various; pose: frontal, lateral-frontal,
#   lateral, lateral-back, back, varied; binary ones: 1 = present / yes.
#   top length / Duke top: 1 = long sleeves; bottom length: 1 = long; hair: 1 = long;
#   gender: 1 = female; bottom type: 1 = dress or skirt; Duke shoes: 1 = light shoes.
#   age: child, teenager, adult, elderly.
# Identity traits of a person, in this order, as class indices.
_TRAITS = (
    "top_color", "bottom_color", "age", "top_length", "bottom_length", "shoulder_bag",
    "backpack", "hat", "hand_bag", "hair", "gender", "bottom_type", "boots", "light_shoes",
)
_MARS_TRAIT_COLUMNS = (
    "top_color", "bottom_color", "age", "top_length", "bottom_length", "shoulder_bag",
    "backpack", "hat", "hand_bag", "hair", "gender", "bottom_type",
)
_DUKE_TRAIT_COLUMNS = (
    "backpack", "shoulder_bag", "hand_bag", "boots", "gender", "hat", "light_shoes",
    "top_length", "bottom_color", "top_color",
)

# black, white, red, purple, yellow, gray, blue, green, brown
_TOP_PALETTE = np.array(
    [[0.08, 0.08, 0.09], [0.92, 0.92, 0.90], [0.80, 0.12, 0.12], [0.50, 0.20, 0.62],
     [0.93, 0.82, 0.15], [0.52, 0.52, 0.54], [0.15, 0.30, 0.80], [0.15, 0.60, 0.22],
     [0.50, 0.32, 0.16]], dtype=np.float32)
# black, white, purple, yellow, gray, blue, green, brown, pink, red (Duke uses the first 8)
_BOTTOM_PALETTE = np.array(
    [[0.07, 0.07, 0.08], [0.90, 0.90, 0.88], [0.45, 0.18, 0.55], [0.90, 0.80, 0.20],
     [0.48, 0.48, 0.50], [0.18, 0.28, 0.65], [0.18, 0.50, 0.22], [0.45, 0.30, 0.15],
     [0.95, 0.55, 0.70], [0.75, 0.10, 0.12]], dtype=np.float32)
_SKIN_TONES = np.array(
    [[0.96, 0.80, 0.68], [0.85, 0.65, 0.50], [0.65, 0.45, 0.32], [0.42, 0.28, 0.20]],
    dtype=np.float32)
_HAIR_COLOURS = np.array(
    [[0.05, 0.04, 0.04], [0.25, 0.15, 0.08], [0.50, 0.33, 0.15], [0.85, 0.72, 0.40]],
    dtype=np.float32)
_AGE_HEIGHT = np.array([0.70, 0.86, 1.0, 0.96], dtype=np.float32)

# (format) -> camera count, class counts of the bottom colour, nuisance probabilities
_FORMATS = {
    "mars": {"cameras": 6, "bottom_colors": 10,
             "binary_p": (0.04, 0.03, 0.04, 0.03, 0.01, 0.01, 0.01)},
    # background-dominant and target-miss are never set in the real Duke CSV
    "duke": {"cameras": 8, "bottom_colors": 8,
             "binary_p": (0.04, 0.03, 0.04, 0.0, 0.01, 0.0, 0.01)},
}
_MOTION_P = (0.55, 0.15, 0.05, 0.20, 0.05)
_POSE_P = (0.7, 0.12, 0.06, 0.04, 0.05, 0.03)
# pose -> (view: 0 front, 1 back, 2 side; width factor); "varied" (5) draws per frame
_POSE_VIEW = np.array([0, 0, 2, 1, 1, 0])
_POSE_WIDTH = np.array([1.0, 0.8, 0.6, 0.8, 1.0, 1.0], dtype=np.float32)
# motion -> (leg swing amplitude in radians, drift in image widths per frame)
_MOTION_SWING = np.array([0.30, 0.55, 0.0, 0.0, 0.4], dtype=np.float32)
_MOTION_DRIFT = np.array([0.010, 0.020, 0.025, 0.0, 0.012], dtype=np.float32)

# Difficulty. Varied, camera-specific backgrounds keep an untrained network low (it pools
# background and person alike); colour casts, viewpoint and pose changes slow learning down
# most. Tuned at 64x32 with a randomly initialised ResNet-18 (T=4, 100 Adam iterations of
# 8 ids x 4 tracklets, about 2 minutes on 2 CPU cores): with ids=40, tracklets=6, mAP goes
# from 31-37 untrained to 74-79 trained, rank-1 80-85 (dataset seeds 0 and 1).
# Camera colour cast (per-channel gain spread) and brightness range; scene walls: saturation
# range, contrast of the structures against their wall; chance of each clutter box.
_CAMERA_CAST = 0.03
_CAMERA_BRIGHTNESS = (0.9, 1.05)
_SCENE_CONTRAST = 0.15
_SCENE_SATURATION = (0.15, 0.45)
_CLUTTER_P = 0.05
_NOISE = 0.025  # sensor noise standard deviation
_N_SEGMENTS = 8
_PANORAMA = 8  # scene width in frame widths
_N_SCENE_BOXES = 16
_N_CLUTTER = 4
_PIXELS_PER_CHUNK = 2**18  # pixels rendered at once (small chunks stay in cache)
_JPEG_QUALITY = 90
_VERSION = 1


# ----------------------------------------------------------------------------------------------
# Sampling of identities, cameras and tracklets
# ----------------------------------------------------------------------------------------------
def _sample_people(rng: np.random.Generator, n: int, n_bottom: int) -> dict[str, np.ndarray]:
    """Draw ``n`` persons: attribute classes (``_TRAITS``) plus identity-specific details."""
    gender = (rng.random(n) < 0.45).astype(np.int64)
    top_p = np.array([0.14, 0.12, 0.11, 0.09, 0.10, 0.12, 0.12, 0.10, 0.10])
    bottom_p = np.array([0.15, 0.09, 0.08, 0.08, 0.12, 0.15, 0.08, 0.10, 0.07, 0.08])[:n_bottom]
    age = rng.choice(4, n, p=[0.06, 0.14, 0.64, 0.16])
    p = {
        "top_color": rng.choice(9, n, p=top_p),
        "bottom_color": rng.choice(n_bottom, n, p=bottom_p / bottom_p.sum()),
        "age": age,
        "top_length": (rng.random(n) < 0.5).astype(np.int64),
        "bottom_length": (rng.random(n) < 0.7).astype(np.int64),
        "shoulder_bag": (rng.random(n) < 0.25).astype(np.int64),
        "backpack": (rng.random(n) < 0.25).astype(np.int64),
        "hat": (rng.random(n) < 0.15).astype(np.int64),
        "hand_bag": (rng.random(n) < 0.15).astype(np.int64),
        "hair": (rng.random(n) < np.where(gender == 1, 0.75, 0.12)).astype(np.int64),
        "gender": gender,
        "bottom_type": (rng.random(n) < np.where(gender == 1, 0.35, 0.0)).astype(np.int64),
        "boots": (rng.random(n) < 0.15).astype(np.int64),
        "light_shoes": (rng.random(n) < 0.4).astype(np.int64),
    }
    # Identity-specific details. Looks that depend on an attribute are derived from its class
    # when drawing (_appearance), so the CSV value is what the figure shows.
    p["top_jitter"] = rng.uniform(-0.07, 0.07, (n, 3))
    p["bottom_jitter"] = rng.uniform(-0.07, 0.07, (n, 3))
    p["skin_rgb"] = _SKIN_TONES[rng.choice(4, n)] * rng.uniform(0.92, 1.05, (n, 1))
    p["hair_base_rgb"] = _HAIR_COLOURS[rng.choice(4, n, p=[0.45, 0.3, 0.15, 0.1])]
    p["gray_hair"] = rng.uniform(0.6, 0.85, n)
    for key in ("hat_rgb", "bag_rgb", "pack_rgb", "hand_rgb", "print_rgb", "logo_rgb"):
        p[key] = rng.uniform(0.05, 0.95, (n, 3))
    p["shoe_levels"] = np.stack([rng.uniform(0.05, 0.3, n), rng.uniform(0.75, 0.95, n)], 1)
    p["shoe_tint"] = rng.uniform(0.9, 1.0, (n, 3))
    p["boot_rgb"] = rng.uniform(0.1, 0.4, (n, 1)) * [[1.0, 0.7, 0.45]]
    # Print on the top: 0 plain, 1 horizontal stripes, 2 vertical stripes, 3 checks.
    p["print_kind"] = rng.choice(4, n, p=[0.25, 0.3, 0.25, 0.2])
    p["print_period"] = rng.uniform(0.045, 0.11, n)
    p["print_phase"] = rng.uniform(0, 2 * np.pi, n)
    p["logo_on"] = (rng.random(n) < 0.7).astype(np.float32)
    p["logo_xy"] = np.stack([rng.uniform(-0.05, 0.05, n), rng.uniform(0.22, 0.44, n)], 1)
    p["logo_size"] = rng.uniform(0.025, 0.05, n)
    p["height_jitter"] = rng.uniform(0.94, 1.06, n)
    p["width_jitter"] = rng.uniform(0.88, 1.12, n)
    return {k: v.astype(np.float32) if v.dtype.kind == "f" else v for k, v in p.items()}


def _appearance(p: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Add the looks that follow from attribute classes to the person table ``p`` (F rows)."""
    rows = np.arange(len(p["age"]))
    elderly = (p["age"] == 3)[:, None]
    return {
        **p,
        "top_rgb": np.clip(_TOP_PALETTE[p["top_color"]] + p["top_jitter"], 0, 1),
        "bottom_rgb": np.clip(_BOTTOM_PALETTE[p["bottom_color"]] + p["bottom_jitter"], 0, 1),
        "hair_rgb": np.where(elderly, p["gray_hair"][:, None], p["hair_base_rgb"]),
        "shoe_rgb": p["shoe_levels"][rows, p["light_shoes"], None] * p["shoe_tint"],
        "height": _AGE_HEIGHT[p["age"]] * p["height_jitter"],
        "width": np.where(p["gender"] == 1, 0.88, 1.0).astype(np.float32) * p["width_jitter"],
    }


def _muted(rng: np.random.Generator, shape: tuple[int, ...], low: float,
           high: float) -> np.ndarray:
    """Random colours, half way to gray: scenes and occluders are duller than clothes."""
    rgb = rng.uniform(low, high, shape)
    return (0.5 * rgb + 0.5 * rgb.mean(axis=-1, keepdims=True)).astype(np.float32)


def _scene_colours(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` muted colours of random hue, (n, 3), for walls and floors."""
    rgb = rng.uniform(0, 1, (n, 3))
    lo, hi = rgb.min(axis=1, keepdims=True), rgb.max(axis=1, keepdims=True)
    rgb = (rgb - lo) / np.maximum(hi - lo, 1e-6)  # full saturation
    sat, value = rng.uniform(*_SCENE_SATURATION, (n, 1)), rng.uniform(0.3, 0.9, (n, 1))
    return (value * (sat * rgb + 1 - sat)).astype(np.float32)


def _sample_cameras(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Per camera: illumination, viewpoint and scene layout."""
    gain = rng.uniform(1 - _CAMERA_CAST, 1 + _CAMERA_CAST, (n, 3))
    gain /= gain.mean(axis=1, keepdims=True)
    # Wide scene: _N_SEGMENTS walls of different colours side by side; each tracklet sees a
    # window of it, so backgrounds vary within a camera and differ between cameras.
    wall = _scene_colours(rng, n * _N_SEGMENTS).reshape(n, _N_SEGMENTS, 3)
    edges = np.sort(rng.uniform(0, 1, (n, _N_SEGMENTS - 1)), axis=1)
    boxes = rng.uniform(0, 1, (n, _N_SCENE_BOXES, 4))
    box_wall = wall[np.arange(n)[:, None], (boxes[..., :1] >= edges[:, None]).sum(-1)]
    box_rgb = box_wall + rng.uniform(-_SCENE_CONTRAST, _SCENE_CONTRAST, (n, _N_SCENE_BOXES, 3))
    return {
        "gain": (gain * rng.uniform(*_CAMERA_BRIGHTNESS, (n, 1))).astype(np.float32),
        "offset": rng.uniform(-0.02, 0.04, (n, 3)).astype(np.float32),
        "scale": rng.uniform(0.92, 1.0, n).astype(np.float32),
        "shift": rng.uniform(-0.03, 0.03, (n, 2)).astype(np.float32),  # x, y in image sizes
        "flip": np.where(rng.random(n) < 0.5, -1.0, 1.0).astype(np.float32),
        "wall_rgb": wall,
        "wall_edges": edges.astype(np.float32),
        "floor_rgb": _scene_colours(rng, n) * 0.7,
        "horizon": rng.uniform(0.5, 0.8, n).astype(np.float32),
        "boxes": boxes.astype(np.float32),
        "box_rgb": np.clip(box_rgb, 0, 1).astype(np.float32),
    }


def _camera_groups(rng: np.random.Generator, n_ids: int, k: int, n_cams: int) -> np.ndarray:
    """Camera (0-based) of each of the ``k`` tracklets of ``n_ids`` identities, (n_ids, k).

    Every identity appears in ``min(n_cams, max(2, k - 1))`` cameras, round robin: at least two
    cameras, and one of them shows two tracklets (the MARS query rule needs it).
    """
    n_used = min(n_cams, max(2, k - 1))
    order = np.argsort(rng.random((n_ids, n_cams)), axis=1)[:, :n_used]  # random camera subset
    return order[:, np.arange(k) % n_used]


def _sample_nuisance(rng: np.random.Generator, n: int, binary_p: Sequence[float]) -> np.ndarray:
    """ID-irrelevant attributes of ``n`` tracklets, (n, 9) class indices."""
    motion = rng.choice(5, n, p=_MOTION_P)
    pose = rng.choice(6, n, p=_POSE_P)
    binary = (rng.random((n, 7)) < np.asarray(binary_p)).astype(np.int64)
    return np.concatenate([motion[:, None], pose[:, None], binary], axis=1)


# ----------------------------------------------------------------------------------------------
# Per-frame parameters
# ----------------------------------------------------------------------------------------------
def _frame_parameters(rng: np.random.Generator, tracks: dict[str, np.ndarray], n_people: int,
                      cams: dict[str, np.ndarray], size: tuple[int, int]) -> dict[str, np.ndarray]:
    """Expand tracklet-level draws into per-frame rendering parameters.

    Args:
        tracks: per tracklet ``person`` (index into the people table, -1 for no person),
            ``camera`` (0-based), ``length`` (frames) and ``nuisance`` (n, 9).
        n_people: size of the people table (other persons are drawn from it).
        cams: camera table of :func:`_sample_cameras`.
        size: (H, W).

    Returns:
        Arrays with one entry per frame, in tracklet order.
    """
    h, w = size
    n_trk = len(tracks["length"])
    length = tracks["length"]
    nu = tracks["nuisance"]
    motion, pose = nu[:, 0], nu[:, 1]
    occl, cut, multi, bgdom, change, miss, wrong = (nu[:, i].astype(bool) for i in range(2, 9))
    cam = tracks["camera"]

    # Tracklet level.
    other = rng.integers(0, n_people, n_trk)
    direction = np.where(rng.random(n_trk) < 0.5, -1.0, 1.0)
    scale = cams["scale"][cam] * rng.uniform(0.93, 1.05, n_trk) * np.where(bgdom, 0.62, 1.0)
    cx0 = 0.5 + cams["shift"][cam, 0] + rng.uniform(-0.05, 0.05, n_trk)
    foot = 0.975 + cams["shift"][cam, 1] * 0.3 + rng.uniform(-0.02, 0.01, n_trk)
    foot = np.where(bgdom, rng.uniform(0.6, 0.9, n_trk), foot)
    cut_mode = rng.integers(0, 3, n_trk)  # legs cut, head cut, side cut
    foot = np.where(cut & (cut_mode == 0), foot + 0.35 * scale, foot)
    foot = np.where(cut & (cut_mode == 1), foot - 0.3 * scale, foot)
    cx0 = np.where(cut & (cut_mode == 2), cx0 + direction * 0.33, cx0)
    cx0 = np.where(wrong, cx0 + direction * 0.42, cx0)
    # The other person stands beside the target, or in the middle when the box is on the wrong
    # target.
    other_dx = np.where(wrong, 0.5 + cams["shift"][cam, 0] - cx0,
                        -direction * rng.uniform(0.45, 0.65, n_trk))
    mirror = np.where(rng.random(n_trk) < 0.5, -1.0, 1.0) * cams["flip"][cam]
    phase0 = rng.uniform(0, 2 * np.pi, n_trk)
    bg_shift = rng.integers(0, _PANORAMA * w, n_trk)
    occ_vertical = rng.random(n_trk) < 0.5
    occ_pos = rng.uniform(0.3, 0.7, n_trk)
    occ_width = rng.uniform(0.12, 0.25, n_trk)
    occ_rgb = _muted(rng, (n_trk, 3), 0.1, 0.8)
    clutter_on = (rng.random((n_trk, _N_CLUTTER)) < np.where(bgdom, 1.0, _CLUTTER_P)[:, None])
    clutter = rng.uniform(0, 1, (n_trk, _N_CLUTTER, 4))
    clutter_rgb = _muted(rng, (n_trk, _N_CLUTTER, 3), 0.05, 0.95)
    miss_start = np.floor(rng.random(n_trk) * np.maximum(length - length // 3, 1)).astype(int)

    # Frame level: index of the tracklet and time within it.
    trk = np.repeat(np.arange(n_trk), length)
    t = np.arange(len(trk)) - np.repeat(np.cumsum(length) - length, length)
    n_frames = len(trk)
    mid = (length[trk] - 1) / 2.0
    various = motion[trk] == 4
    swing_amp = np.where(various, rng.uniform(0.0, 0.6, n_frames), _MOTION_SWING[motion[trk]])
    phase = phase0[trk] + 1.3 * t * np.where(motion[trk] == 1, 1.6, 1.0)
    swing = swing_amp * np.sin(phase)
    swing = np.where(motion[trk] == 2, 0.35, swing)  # riding: legs held apart
    drift = _MOTION_DRIFT[motion[trk]] * direction[trk] * (t - mid)
    bob = np.where(motion[trk] == 1, 0.012 * np.abs(np.sin(phase)), 0.0)
    varied = pose[trk] == 5
    view = np.where(varied, rng.integers(0, 3, n_frames), _POSE_VIEW[pose[trk]])
    width = np.where(varied, np.array([1.0, 1.0, 0.6])[view], _POSE_WIDTH[pose[trk]])
    flip_frame = np.where(varied & (rng.random(n_frames) < 0.5), -1.0, 1.0)

    person = tracks["person"][trk].copy()
    changed = change[trk] & (t >= np.ceil(length[trk] * 2 / 3))
    person = np.where(changed, other[trk], person)
    present = person >= 0
    present &= ~(miss[trk] & (t >= miss_start[trk]) & (t < miss_start[trk] + length[trk] // 3))
    second = np.where(multi[trk] | wrong[trk], other[trk], -1)
    second = np.where(changed, tracks["person"][trk], second)

    return {
        "camera": cam[trk],
        "person": np.where(present, person, -1),
        "second": second,
        "cx": ((cx0[trk] + drift) * w).astype(np.float32),
        "foot": ((foot[trk] - bob) * h).astype(np.float32),
        "height": (0.9 * h * scale[trk]).astype(np.float32),
        "second_dx": (other_dx[trk] * w).astype(np.float32),
        "mirror": (mirror[trk] * flip_frame).astype(np.float32),
        "view": view,
        "width": width.astype(np.float32),
        "swing": swing.astype(np.float32),
        "bg_shift": bg_shift[trk],
        "occluded": occl[trk],
        "occ_vertical": occ_vertical[trk],
        "occ_pos": occ_pos[trk].astype(np.float32),
        "occ_width": occ_width[trk].astype(np.float32),
        "occ_rgb": occ_rgb[trk].astype(np.float32),
        "clutter_on": clutter_on[trk],
        "clutter": clutter[trk].astype(np.float32),
        "clutter_rgb": clutter_rgb[trk].astype(np.float32),
        "flicker": rng.uniform(0.95, 1.05, n_frames).astype(np.float32),
        "noise_seed": rng.integers(0, 2**31 - 1, n_frames),
    }


# ----------------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------------
def _camera_scenes(rng: np.random.Generator, cams: dict[str, np.ndarray],
                   size: tuple[int, int]) -> np.ndarray:
    """Static wide scene of every camera: walls, floor, structures, coarse texture.

    Returns:
        (n_cams, H, _PANORAMA * W, 3) float32 in [0, 1].
    """
    h, w = size
    pw = _PANORAMA * w
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
    x1, y1 = x0 + (0.1 + 0.4 * b[..., 2]) / _PANORAMA, y0 + 0.1 + 0.5 * b[..., 3]
    inside = ((x[None, None] >= x0[..., None, None]) & (x[None, None] < x1[..., None, None])
              & (y[None, None] >= y0[..., None, None]) & (y[None, None] < y1[..., None, None]))
    for k in range(_N_SCENE_BOXES):  # painter's order over a handful of boxes
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


def _draw_person(img: np.ndarray, people: dict[str, np.ndarray], idx: np.ndarray,
                 cx: np.ndarray, foot: np.ndarray, height: np.ndarray, mirror: np.ndarray,
                 view: np.ndarray, width: np.ndarray, swing: np.ndarray) -> None:
    """Draw person ``idx`` (F,) (-1: nobody) into ``img`` (F, H, W, 3), in place."""
    shown = np.flatnonzero(idx >= 0)
    if len(shown) < len(idx):  # draw on the frames that show somebody only
        if len(shown):
            sub = img[shown]
            _draw_person(sub, people, idx[shown], cx[shown], foot[shown], height[shown],
                         mirror[shown], view[shown], width[shown], swing[shown])
            img[shown] = sub
        return
    size = img.shape[1:3]
    on = np.ones(len(idx), np.float32)
    p = _appearance({k: v[idx] for k, v in people.items()})
    hp = height * p["height"]
    fig = _Figure(size, cx, foot - hp, hp, mirror)
    front, back, side = (((view == v) * on).astype(np.float32) for v in (0, 1, 2))
    yes = {k: p[k].astype(np.float32) * on for k in (
        "hair", "backpack", "shoulder_bag", "hand_bag", "hat", "boots", "bottom_type")}
    tw = 0.115 * p["width"] * width  # half torso width
    leg_x = 0.05 * p["width"] * np.where(view == 2, 0.15, 1.0)
    arm_x = tw + 0.026

    def paint(alpha: np.ndarray, rgb: np.ndarray, gate: np.ndarray = on) -> None:
        rows = np.flatnonzero(gate)
        if len(rows) == len(gate):
            _composite(img, alpha * gate[:, None, None], rgb)
        elif len(rows):  # a part that few frames show: composite those frames only
            sub = img[rows]
            _composite(sub, alpha[rows] * gate[rows, None, None], rgb[rows])
            img[rows] = sub

    # Behind the body: long hair, backpack seen from the side.
    paint(fig.box(-0.068, 0.068, 0.05, 0.27), p["hair_rgb"], yes["hair"] * (1 - back))
    paint(fig.box(-tw - 0.085, -tw + 0.01, 0.2, 0.46), p["pack_rgb"], yes["backpack"] * side)
    # Arms (sleeve over skin) and legs (trousers over skin, shoes or boots).
    sleeve = np.where(p["top_length"] == 1, 0.27, 0.09)
    trousers = np.where(p["bottom_type"] == 1, 0.0,
                        np.where(p["bottom_length"] == 1, 0.40, 0.17))
    for sign in (-1.0, 1.0):
        arm_angle = -0.7 * sign * swing + sign * 0.08
        paint(fig.limb(sign * arm_x, 0.19, arm_angle, 0.0, 0.31, 0.055), p["skin_rgb"])
        paint(fig.limb(sign * arm_x, 0.19, arm_angle, 0.0, sleeve, 0.058), p["top_rgb"])
        leg = fig.limb(sign * leg_x, 0.52, sign * swing, 0.0, 0.44, 0.075)
        paint(leg, p["skin_rgb"])
        paint(fig.limb(sign * leg_x, 0.52, sign * swing, 0.0, trousers, 0.077), p["bottom_rgb"])
        paint(fig.limb(sign * leg_x, 0.52, sign * swing, 0.27, 0.46, 0.079), p["boot_rgb"],
              yes["boots"])
        paint(fig.limb(sign * leg_x, 0.52, sign * swing, 0.41, 0.47, 0.083), p["shoe_rgb"],
              on * (1 - yes["boots"]))
    # Dress or skirt.
    skirt_len = np.where(p["bottom_length"] == 1, 0.36, 0.2)
    paint(fig.skirt(0.5, skirt_len, tw * 0.95, tw * 1.35), p["bottom_rgb"], yes["bottom_type"])
    # Torso with the identity's print; the logo is on the front only.
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
    paint(fig.box(lx - s, lx + s, ly - s, ly + s), p["logo_rgb"], p["logo_on"] * (1 - back) * on)
    # Backpack: straps in front, the pack on the back.
    for sign in (-1.0, 1.0):
        paint(fig.box(sign * tw * 0.55 - 0.012, sign * tw * 0.55 + 0.012, 0.17, 0.38),
              p["pack_rgb"] * 0.6, yes["backpack"] * front)
    paint(fig.box(-tw * 0.6, tw * 0.6, 0.22, 0.44), p["pack_rgb"], yes["backpack"] * back)
    # Shoulder bag: strap across the torso, bag at the hip; hand bag at the other hand.
    paint(fig.limb(tw * 0.7, 0.17, -0.55, 0.0, 0.36, 0.022), p["bag_rgb"] * 0.7,
          yes["shoulder_bag"] * (1 - side))
    paint(fig.box(-tw - 0.075, -tw + 0.015, 0.42, 0.56), p["bag_rgb"], yes["shoulder_bag"])
    paint(fig.box(arm_x + 0.005, arm_x + 0.085, 0.47, 0.58), p["hand_rgb"], yes["hand_bag"])
    # Head: face (hair from the back), hair on top, long hair locks, hat.
    face = fig.ellipse(0.0, 0.095, 0.052, 0.07)
    paint(face, p["skin_rgb"], on * (1 - back))
    paint(face, p["hair_rgb"], back)
    paint(fig.ellipse(0.0, 0.08, 0.056, 0.06) * fig.box(-1.0, 1.0, -1.0, 0.065), p["hair_rgb"])
    for sign in (-1.0, 1.0):
        paint(fig.box(sign * 0.056 - 0.014, sign * 0.056 + 0.014, 0.06, 0.25), p["hair_rgb"],
              yes["hair"] * front)
    paint(fig.box(-0.06, 0.06, 0.0, 0.045), p["hat_rgb"], yes["hat"])
    paint(fig.box(-0.085, 0.085, 0.035, 0.052), p["hat_rgb"] * 0.8, yes["hat"])


def _render_chunk(fp: dict[str, np.ndarray], people: dict[str, np.ndarray],
                  cams: dict[str, np.ndarray], scenes: np.ndarray) -> np.ndarray:
    """Render the frames of ``fp`` (per-frame parameters, F entries) to uint8 (F, H, W, 3)."""
    _, h, pw, _ = scenes.shape
    w = pw // _PANORAMA
    cols = (np.arange(w)[None, :] + fp["bg_shift"][:, None]) % pw  # (F, W) window of the scene
    img = scenes[fp["camera"][:, None, None], np.arange(h)[None, :, None], cols[:, None, :]]
    # Clutter: boxes of random colour in front of the scene.
    y = (np.arange(h, dtype=np.float32)[None, :, None] + 0.5) / h
    x = (np.arange(w, dtype=np.float32)[None, None, :] + 0.5) / w
    c = fp["clutter"]
    for k in range(_N_CLUTTER):
        x0, y0 = c[:, k, 0, None, None], c[:, k, 1, None, None]
        x1, y1 = x0 + 0.1 + 0.4 * c[:, k, 2, None, None], y0 + 0.05 + 0.3 * c[:, k, 3, None, None]
        inside = (x >= x0) & (x < x1) & (y >= y0) & (y < y1) & fp["clutter_on"][:, k, None, None]
        _composite(img, inside.astype(np.float32), fp["clutter_rgb"][:, k])
    pose = {k: fp[k] for k in ("mirror", "view", "width", "swing")}
    # A second person behind the target (multi-person, wrong target, after a target change).
    _draw_person(img, people, fp["second"], fp["cx"] + fp["second_dx"], fp["foot"],
                 fp["height"] * 0.97, **pose)
    _draw_person(img, people, fp["person"], fp["cx"], fp["foot"], fp["height"], **pose)
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


# ----------------------------------------------------------------------------------------------
# Dataset plans: which tracklet goes where
# ----------------------------------------------------------------------------------------------
def _identity_tracklets(rng: np.random.Generator, pids: np.ndarray, k: int,
                        n_cams: int) -> tuple[np.ndarray, np.ndarray]:
    """``k`` tracklets for each pid, sorted by (pid, camera): (pids, cameras 1-based)."""
    cams = _camera_groups(rng, len(pids), k, n_cams) + 1  # (n_ids, k)
    cams.sort(axis=1)
    return np.repeat(pids, k), cams.reshape(-1)


def _running_number(keys: np.ndarray) -> np.ndarray:
    """1-based running number within runs of equal consecutive ``keys``."""
    start = np.r_[True, keys[1:] != keys[:-1]]
    first = np.maximum.accumulate(np.where(start, np.arange(len(keys)), 0))
    return np.arange(len(keys)) - first + 1


def _mars_queries(pid: np.ndarray, cam: np.ndarray) -> np.ndarray:
    """Query rows (0-based) of a test table sorted by (pid, camera), as MARS does it.

    For every identity and camera with at least two tracklets, the last one is a query; an
    identity left without a query gives its first tracklet.
    """
    key = pid * 100 + cam
    last = np.r_[key[1:] != key[:-1], True]
    group_size = _running_number(key)
    query = last & (group_size >= 2) & (pid > 0)
    person_ids = np.unique(pid[pid > 0])
    has_query = np.isin(person_ids, pid[query])
    first_row = np.searchsorted(pid, person_ids)
    query[first_row[~has_query]] = True
    return np.flatnonzero(query)


def _plan(rng: np.random.Generator, fmt: str, ids: int, k: int,
          frames: int) -> tuple[dict[str, np.ndarray], int]:
    """Decide every tracklet of the dataset.

    Returns:
        (tracks, n_people): per tracklet ``split`` (0 train, 1 test), ``pid``, ``camid``
        (1-based), ``tnum`` (tracklet number), ``person`` (index into the people table, -1
        none), ``query`` (bool), ``nuisance`` (n, 9), ``length``, ``has_row`` (bool: gets a
        CSV row); and the number of people to draw (identities first, then extra persons).
    """
    n_train = ids // 2
    n_test = ids - n_train
    n_cams = _FORMATS[fmt]["cameras"]
    perm = rng.permutation(ids) + 1
    train_pids, test_pids = np.sort(perm[:n_train]), np.sort(perm[n_train:])
    tr_pid, tr_cam = _identity_tracklets(rng, train_pids, k, n_cams)
    te_pid, te_cam = _identity_tracklets(rng, test_pids, k, n_cams)
    n_extra_people = max(ids, 8)
    extra = ids + rng.integers(0, n_extra_people, 4 * ids + 16)  # persons that are no identity
    if fmt == "mars":
        n_junk, n_dis = max(2, n_test // 4), max(2, n_test // 2)
        junk_cam = np.sort(rng.integers(1, n_cams + 1, n_junk))
        dis_cam = np.sort(rng.integers(1, n_cams + 1, n_dis))
        pid = np.concatenate([tr_pid, -np.ones(n_junk, int), np.zeros(n_dis, int), te_pid])
        cam = np.concatenate([tr_cam, junk_cam, dis_cam, te_cam])
        split = np.r_[np.zeros(len(tr_pid), int), np.ones(len(pid) - len(tr_pid), int)]
        tnum = _running_number(pid)
        person = np.where(pid > 0, pid - 1, -1)
        person[pid == 0] = extra[:n_dis]
        query = np.zeros(len(pid), bool)
        test_rows = np.flatnonzero(split == 1)
        query[test_rows[_mars_queries(pid[test_rows], cam[test_rows])]] = True
    else:
        n_dis = max(1, n_test // 4)  # gallery-only identities, as in the real gallery
        dis_pid = ids + 1 + np.arange(n_dis)
        pid = np.concatenate([tr_pid, te_pid, dis_pid])
        cam = np.concatenate([tr_cam, te_cam, rng.integers(1, n_cams + 1, n_dis)])
        split = np.r_[np.zeros(len(tr_pid), int), np.ones(len(pid) - len(tr_pid), int)]
        tnum = np.arange(1, len(pid) + 1)
        person = pid - 1
        person[pid > ids] = extra[:n_dis]
        query = np.zeros(len(pid), bool)
        query[len(tr_pid) + np.arange(n_test) * k] = True  # first tracklet of each test id
    nuisance = _sample_nuisance(rng, len(pid), _FORMATS[fmt]["binary_p"])
    nuisance[pid == -1, 2:] = 0
    nuisance[pid == -1, 4:6] = 1  # junk: background and a stray person at the border
    nuisance[pid == 0, 3] = 1  # distractors: partial detections
    spread = frames // 4
    length = rng.integers(frames - spread, frames + spread + 1, len(pid))
    tracks = {"split": split, "pid": pid, "camid": cam, "tnum": tnum, "person": person,
              "query": query, "nuisance": nuisance, "length": length, "has_row": pid > 0}
    return tracks, ids + n_extra_people


# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------
def _frame_files(fmt: str, tracks: dict[str, np.ndarray],
                 rng: np.random.Generator) -> list[list[str]]:
    """Relative paths of every frame, one list per frame (Duke queries go to two folders)."""
    files: list[list[str]] = []
    for i in range(len(tracks["pid"])):
        pid, cam, tnum = (int(tracks[k][i]) for k in ("pid", "camid", "tnum"))
        n = int(tracks["length"][i])
        if fmt == "mars":
            folder = "bbox_train" if tracks["split"][i] == 0 else "bbox_test"
            p4 = "00-1" if pid == -1 else f"{pid:04d}"
            files += [[f"{folder}/{p4}/{p4}C{cam}T{tnum:04d}F{f:03d}.jpg"]
                      for f in range(1, n + 1)]
        else:
            folders = ["train"] if tracks["split"][i] == 0 else ["gallery"]
            if tracks["query"][i]:
                folders.insert(0, "query")
            source = int(rng.integers(0, 90000))  # the frame's number in its source video
            files += [[f"{d}/{pid:04d}/{tnum:04d}/{pid:04d}_C{cam}_F{f:04d}_X{source + f:05d}.jpg"
                       for d in folders] for f in range(1, n + 1)]
    return files


def _write_mars_info(root: Path, tracks: dict[str, np.ndarray], files: list[list[str]]) -> None:
    info = root / "info"
    info.mkdir()
    ends = np.cumsum(tracks["length"])
    for split, name in ((0, "train"), (1, "test")):
        rows = np.flatnonzero(tracks["split"] == split)
        names = [files[f][0].rsplit("/", 1)[1]
                 for r in rows for f in range(ends[r] - tracks["length"][r], ends[r])]
        (info / f"{name}_name.txt").write_text("\n".join(names) + "\n")
        end = np.cumsum(tracks["length"][rows])
        table = np.stack([end - tracks["length"][rows] + 1, end, tracks["pid"][rows],
                          tracks["camid"][rows]], axis=1).astype(np.int32)  # (N, 4)
        sio.savemat(info / f"tracks_{name}_info.mat", {f"track_{name}_info": table})
        if split == 1:
            query_rows = np.flatnonzero(tracks["query"][rows]) + 1  # 1-based
            sio.savemat(info / "query_IDX.mat",
                        {"query_IDX": query_rows.astype(np.int32)[None, :]})


def _write_csv(path: Path, columns: Sequence[str], tracks: dict[str, np.ndarray],
               people: dict[str, np.ndarray], trait_columns: Sequence[str]) -> None:
    rows = np.flatnonzero(tracks["has_row"])
    person = tracks["person"][rows]
    table = np.concatenate(
        [np.stack([tracks["pid"][rows], tracks["camid"][rows], tracks["tnum"][rows]], 1),
         tracks["nuisance"][rows],
         np.stack([people[t][person] for t in trait_columns], 1)], axis=1)
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)  # "\r\n" line ends, as the real files
        writer.writerow(KEY_COLUMNS + tuple(columns))
        writer.writerows(table.tolist())


def _check_arguments(fmt: str, ids: int, tracklets: int, frames: int,
                     size: Sequence[int]) -> tuple[int, int]:
    if fmt not in _FORMATS:
        raise UserError(f"Unknown synthetic dataset format {fmt!r}; use 'mars' or 'duke'.")
    if not 2 <= ids <= 4000:
        raise UserError(f"Invalid number of identities {ids}; use 2 to 4000 (half train, "
                        "half test).")
    if not 2 <= tracklets <= 99:
        raise UserError(f"Invalid number of tracklets per identity {tracklets}; use 2 to 99 "
                        "(test identities need tracklets on two cameras).")
    if not 1 <= frames <= 790:
        raise UserError(f"Invalid number of frames per tracklet {frames}; use 1 to 790.")
    if len(size) != 2 or int(size[0]) < 16 or int(size[1]) < 8:
        raise UserError(f"Invalid image size {tuple(size)}; give (height, width), at least "
                        "(16, 8).")
    if fmt == "duke" and ids * tracklets + ids // 8 + 1 > 9999:
        raise UserError(f"ids x tracklets = {ids * tracklets} is too large for Duke's 4-digit "
                        "tracklet folders; use fewer.")
    return int(size[0]), int(size[1])


def _check_target(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} exists and is not a folder; choose another output folder.")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER_NAME).is_file():
        raise UserError(
            f"Refusing to write a synthetic dataset into {out}: the folder is not empty and is "
            f"not a previous synthetic dataset (no {MARKER_NAME}). Choose a new or empty folder.")


def write_synthetic_dataset(out: str | Path, fmt: str = "mars", ids: int = 40,
                            tracklets: int = 4, frames: int = 8,
                            size: tuple[int, int] = (64, 32), seed: int = 0) -> Path:
    """Write a synthetic video re-ID dataset in the real MARS or DukeMTMC-VideoReID layout.

    The same arguments give byte-identical files. A previous synthetic dataset at ``out`` is
    replaced; any other non-empty folder is refused.

    Args:
        out: dataset root to create (its parent folders are created as needed).
        fmt: "mars" or "duke".
        ids: identities, half for training and half for testing (the test split adds junk and
            distractor tracklets for MARS, gallery-only identities for Duke).
        tracklets: tracklets per identity (>= 2), spread over at least two cameras.
        frames: mean frames per tracklet; lengths vary by up to ``frames // 4``.
        size: (height, width) of the frames in pixels.
        seed: seed of every random draw.

    Returns:
        The dataset root ``out``.

    Example:
        >>> root = write_synthetic_dataset("/tmp/mars_syn", "mars", ids=20)  # doctest: +SKIP
    """
    h, w = _check_arguments(fmt, ids, tracklets, frames, size)
    out = Path(out)
    _check_target(out)
    rng = np.random.default_rng(seed)
    tracks, n_people = _plan(rng, fmt, ids, tracklets, frames)
    people = _sample_people(rng, n_people, _FORMATS[fmt]["bottom_colors"])
    cams = _sample_cameras(rng, _FORMATS[fmt]["cameras"])
    fp = _frame_parameters(rng, {**tracks, "camera": tracks["camid"] - 1}, n_people, cams,
                           (h, w))
    scenes = _camera_scenes(rng, cams, (h, w))
    files = _frame_files(fmt, tracks, rng)

    out.parent.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex[:8]
    tmp = out.parent / f".{out.name}.tmp-{token}"
    try:
        tmp.mkdir()
        for folder in sorted({str(Path(f).parent) for paths in files for f in paths}):
            (tmp / folder).mkdir(parents=True)
        chunk = max(1, _PIXELS_PER_CHUNK // (h * w))
        for start in range(0, len(files), chunk):
            part = {k: v[start:start + chunk] for k, v in fp.items()}
            for paths, frame in zip(files[start:start + chunk],
                                    _render_chunk(part, people, cams, scenes)):
                image = Image.fromarray(frame)
                for rel in paths:
                    image.save(tmp / rel, quality=_JPEG_QUALITY)
        if fmt == "mars":
            _write_mars_info(tmp, tracks, files)
            _write_csv(tmp / "mars_attributes.csv", MARS_ATTRIBUTE_COLUMNS, tracks, people,
                       _MARS_TRAIT_COLUMNS)
        else:
            _write_csv(tmp / "duke_attributes.csv", DUKE_ATTRIBUTE_COLUMNS, tracks, people,
                       _DUKE_TRAIT_COLUMNS)
        marker = {"generator": "data.synthetic", "version": _VERSION, "format": fmt,
                  "ids": ids, "tracklets": tracklets, "frames": frames, "size": [h, w],
                  "seed": seed}
        (tmp / MARKER_NAME).write_text(json.dumps(marker, indent=1) + "\n")  # written last
        _check_target(out)
        if out.exists():
            old = out.parent / f".{out.name}.old-{token}"
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old)
        else:
            tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out


@run_cli
def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m data.synthetic --format mars|duke --out DIR [...]``."""
    parser = argparse.ArgumentParser(
        prog="python -m data.synthetic",
        description="Write a small synthetic MARS or DukeMTMC-VideoReID dataset in the real "
                    "on-disk format (images, split files, attribute CSV).")
    parser.add_argument("--format", choices=sorted(_FORMATS), default="mars")
    parser.add_argument("--out", required=True, help="dataset root to create")
    parser.add_argument("--ids", type=int, default=40, help="identities (half train, half test)")
    parser.add_argument("--tracklets", type=int, default=4, help="tracklets per identity")
    parser.add_argument("--frames", type=int, default=8, help="mean frames per tracklet")
    parser.add_argument("--size", type=int, nargs=2, default=[64, 32], metavar=("H", "W"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    root = write_synthetic_dataset(args.out, args.format, args.ids, args.tracklets,
                                   args.frames, tuple(args.size), args.seed)
    print(f"wrote a synthetic {args.format} dataset to {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
