"""The plan of a synthetic dataset: identities, cameras, tracklets and per-frame parameters.

Every random draw of a dataset except the scene texture and the file names happens here, in a
fixed order, so the same seed gives the same dataset. Class counts and the attribute order
come from the schemas of :mod:`data.attributes`.

Meaning of the sampled classes (0-based CSV values):

* motion: walking, running, riding, staying, various; pose: frontal, lateral-frontal,
  lateral, lateral-back, back, varied; binary ones: 1 = present / yes.
* top length / Duke top: 1 = long sleeves; bottom length: 1 = long; hair: 1 = long;
  gender: 1 = female; bottom type: 1 = dress or skirt; Duke shoes: 1 = light shoes.
* age: child, teenager, adult, elderly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from data.attributes import AttributeSchema
from data.datasets import DATASETS

__all__ = [
    "CSV_TRAITS",
    "FORMATS",
    "N_CLUTTER",
    "N_SCENE_BOXES",
    "PANORAMA",
    "TRAITS",
    "format_schema",
    "frame_parameters",
    "plan_dataset",
    "sample_cameras",
    "sample_people",
]

# Identity traits of a person, in this order, as class indices.
TRAITS = (
    "top_color", "bottom_color", "age", "top_length", "bottom_length", "shoulder_bag",
    "backpack", "hat", "hand_bag", "hair", "gender", "bottom_type", "boots", "light_shoes",
)
# ID-relevant CSV column (MARS or Duke spelling) -> the trait it holds.
CSV_TRAITS = {
    "top color": "top_color", "bottom color": "bottom_color", "age": "age",
    "top length": "top_length", "top": "top_length", "bottom length": "bottom_length",
    "shoulder bag": "shoulder_bag", "bag": "shoulder_bag", "backpack": "backpack", "hat": "hat",
    "hand bag": "hand_bag", "handbag": "hand_bag", "hair": "hair", "gender": "gender",
    "bottom type": "bottom_type", "boots": "boots", "shoes": "light_shoes",
}

# format -> camera count, chances of the 7 binary ID-irrelevant attributes, and the dataset
# whose split plan (queries, junk, distractors) and attribute schema it follows
FORMATS = {
    "mars": {"cameras": 6, "binary_p": (0.04, 0.03, 0.04, 0.03, 0.01, 0.01, 0.01),
             "like": "mars"},
    # background-dominant and target-miss are never set in the real Duke CSV
    "duke": {"cameras": 8, "binary_p": (0.04, 0.03, 0.04, 0.0, 0.01, 0.0, 0.01), "like": "duke"},
    # the folder layout of your own data (data.datasets.folder), with MARS's plan and attributes
    "folder": {"cameras": 6, "binary_p": (0.04, 0.03, 0.04, 0.03, 0.01, 0.01, 0.01),
               "like": "mars"},
}
_SKIN_TONES = np.array(
    [[0.96, 0.80, 0.68], [0.85, 0.65, 0.50], [0.65, 0.45, 0.32], [0.42, 0.28, 0.20]],
    dtype=np.float32)
_HAIR_COLOURS = np.array(
    [[0.05, 0.04, 0.04], [0.25, 0.15, 0.08], [0.50, 0.33, 0.15], [0.85, 0.72, 0.40]],
    dtype=np.float32)
_TOP_P = (0.14, 0.12, 0.11, 0.09, 0.10, 0.12, 0.12, 0.10, 0.10)
_BOTTOM_P = (0.15, 0.09, 0.08, 0.08, 0.12, 0.15, 0.08, 0.10, 0.07, 0.08)
_AGE_P = (0.06, 0.14, 0.64, 0.16)
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
_N_SEGMENTS = 8
PANORAMA = 8  # scene width in frame widths
N_SCENE_BOXES = 16
N_CLUTTER = 4


def format_schema(fmt: str) -> AttributeSchema:
    """The attribute schema of a synthetic format (that of the dataset it follows)."""
    return DATASETS[FORMATS[fmt]["like"]].attribute_schema


def _class_count(schema: AttributeSchema, column: str) -> int:
    """Number of classes of the attribute ``column`` of ``schema``."""
    return schema.flat_lens[schema.names.index(column)]


# ----------------------------------------------------------------------------------------------
# Identities, cameras and ID-irrelevant attributes
# ----------------------------------------------------------------------------------------------
def sample_people(rng: np.random.Generator, n: int,
                  schema: AttributeSchema) -> dict[str, np.ndarray]:
    """Draw ``n`` persons: attribute classes (:data:`TRAITS`) plus identity-specific details.

    Args:
        rng: the dataset's generator.
        n: number of persons.
        schema: the format's schema (gives the top and bottom colour class counts).

    Returns:
        ``{key: (n, ...) array}``: the traits as int64 class indices, the details (colours,
        print, proportions) as float32; :func:`tools.synthetic.render.appearance` turns them
        into looks.
    """
    n_bottom = _class_count(schema, "bottom color")
    gender = (rng.random(n) < 0.45).astype(np.int64)
    bottom_p = np.array(_BOTTOM_P)[:n_bottom]
    age = rng.choice(len(_AGE_P), n, p=_AGE_P)
    p = {
        "top_color": rng.choice(_class_count(schema, "top color"), n, p=_TOP_P),
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
    # when drawing (render.appearance), so the CSV value is what the figure shows.
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


def _muted(rng: np.random.Generator, shape: tuple[int, ...], low: float,
          high: float) -> np.ndarray:
    """Random colours ``shape`` (..., 3), half way to gray: scenes and occluders are duller
    than clothes."""
    rgb = rng.uniform(low, high, shape)
    return (0.5 * rgb + 0.5 * rgb.mean(axis=-1, keepdims=True)).astype(np.float32)


def _scene_colours(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` muted colours of random hue, (n, 3), for walls and floors."""
    rgb = rng.uniform(0, 1, (n, 3))
    lo, hi = rgb.min(axis=1, keepdims=True), rgb.max(axis=1, keepdims=True)
    rgb = (rgb - lo) / np.maximum(hi - lo, 1e-6)  # full saturation
    sat, value = rng.uniform(*_SCENE_SATURATION, (n, 1)), rng.uniform(0.3, 0.9, (n, 1))
    return (value * (sat * rgb + 1 - sat)).astype(np.float32)


def sample_cameras(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Per camera: illumination, viewpoint and scene layout.

    Returns:
        ``{key: (n, ...) float32 array}``: ``gain``, ``offset`` (n, 3); ``scale`` (n,),
        ``shift`` (n, 2), ``flip`` (n,) of the viewpoint; the scene's ``wall_rgb``
        (n, segments, 3), ``wall_edges`` (n, segments - 1), ``floor_rgb`` (n, 3), ``horizon``
        (n,), ``boxes`` (n, N_SCENE_BOXES, 4) and ``box_rgb`` (n, N_SCENE_BOXES, 3).
    """
    gain = rng.uniform(1 - _CAMERA_CAST, 1 + _CAMERA_CAST, (n, 3))
    gain /= gain.mean(axis=1, keepdims=True)
    # Wide scene: _N_SEGMENTS walls of different colours side by side; each tracklet sees a
    # window of it, so backgrounds vary within a camera and differ between cameras.
    wall = _scene_colours(rng, n * _N_SEGMENTS).reshape(n, _N_SEGMENTS, 3)
    edges = np.sort(rng.uniform(0, 1, (n, _N_SEGMENTS - 1)), axis=1)
    boxes = rng.uniform(0, 1, (n, N_SCENE_BOXES, 4))
    box_wall = wall[np.arange(n)[:, None], (boxes[..., :1] >= edges[:, None]).sum(-1)]
    box_rgb = box_wall + rng.uniform(-_SCENE_CONTRAST, _SCENE_CONTRAST, (n, N_SCENE_BOXES, 3))
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


def _sample_nuisance(rng: np.random.Generator, n: int, schema: AttributeSchema,
                     binary_p: Sequence[float]) -> np.ndarray:
    """ID-irrelevant attributes of ``n`` tracklets, (n, 9) class indices in schema order."""
    n_motion, n_pose = schema.lens[0][:2]
    motion = rng.choice(n_motion, n, p=_MOTION_P)
    pose = rng.choice(n_pose, n, p=_POSE_P)
    binary = (rng.random((n, len(binary_p))) < np.asarray(binary_p)).astype(np.int64)
    return np.concatenate([motion[:, None], pose[:, None], binary], axis=1)


# ----------------------------------------------------------------------------------------------
# Per-frame parameters
# ----------------------------------------------------------------------------------------------
def _tracklet_placement(rng: np.random.Generator, tracks: dict[str, np.ndarray], n_people: int,
                        cams: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Where the target and the other person of each tracklet stand (n_trk entries each).

    Positions are fractions of the frame: ``cx`` horizontal centre, ``foot`` foot line,
    ``other_dx`` offset of the other person; ``scale`` of the figure, ``direction`` of walking,
    ``mirror`` of the figure, ``phase`` of the gait, ``other`` the other person (a people row).
    """
    n_trk = len(tracks["length"])
    nu = tracks["nuisance"]
    cut, bgdom, wrong = (nu[:, i].astype(bool) for i in (3, 5, 8))
    cam = tracks["camera"]
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
    phase = rng.uniform(0, 2 * np.pi, n_trk)
    return {"other": other, "direction": direction, "scale": scale, "cx": cx0, "foot": foot,
            "other_dx": other_dx, "mirror": mirror, "phase": phase}


def _tracklet_scenery(rng: np.random.Generator, tracks: dict[str, np.ndarray],
                      w: int) -> dict[str, np.ndarray]:
    """Per tracklet: window into the camera scene, occluder, clutter boxes, and the first frame
    of the gap of a missing target (``miss_start``)."""
    n_trk = len(tracks["length"])
    length = tracks["length"]
    bgdom = tracks["nuisance"][:, 5].astype(bool)
    return {
        "bg_shift": rng.integers(0, PANORAMA * w, n_trk),
        "occ_vertical": rng.random(n_trk) < 0.5,
        "occ_pos": rng.uniform(0.3, 0.7, n_trk),
        "occ_width": rng.uniform(0.12, 0.25, n_trk),
        "occ_rgb": _muted(rng, (n_trk, 3), 0.1, 0.8),
        "clutter_on": rng.random((n_trk, N_CLUTTER)) < np.where(bgdom, 1.0, _CLUTTER_P)[:, None],
        "clutter": rng.uniform(0, 1, (n_trk, N_CLUTTER, 4)),
        "clutter_rgb": _muted(rng, (n_trk, N_CLUTTER, 3), 0.05, 0.95),
        "miss_start": np.floor(rng.random(n_trk) * np.maximum(length - length // 3, 1)
                               ).astype(int),
    }


def _frame_motion(rng: np.random.Generator, motion: np.ndarray, place: dict[str, np.ndarray],
                  trk: np.ndarray, t: np.ndarray, mid: np.ndarray) -> dict[str, np.ndarray]:
    """Per frame: leg ``swing`` (radians), horizontal ``drift`` and vertical ``bob`` (frame
    fractions) from the tracklet's motion class; ``trk``, ``t`` and ``mid`` index the frames."""
    n_frames = len(trk)
    various = motion[trk] == 4
    swing_amp = np.where(various, rng.uniform(0.0, 0.6, n_frames), _MOTION_SWING[motion[trk]])
    phase = place["phase"][trk] + 1.3 * t * np.where(motion[trk] == 1, 1.6, 1.0)
    swing = swing_amp * np.sin(phase)
    swing = np.where(motion[trk] == 2, 0.35, swing)  # riding: legs held apart
    drift = _MOTION_DRIFT[motion[trk]] * place["direction"][trk] * (t - mid)
    bob = np.where(motion[trk] == 1, 0.012 * np.abs(np.sin(phase)), 0.0)
    return {"swing": swing, "drift": drift, "bob": bob}


def _frame_pose(rng: np.random.Generator, pose: np.ndarray,
                trk: np.ndarray) -> dict[str, np.ndarray]:
    """Per frame: ``view`` (0 front, 1 back, 2 side), torso ``width`` factor and ``flip``
    (-1 or 1) from the tracklet's pose class; "varied" draws them per frame."""
    n_frames = len(trk)
    varied = pose[trk] == 5
    view = np.where(varied, rng.integers(0, 3, n_frames), _POSE_VIEW[pose[trk]])
    width = np.where(varied, np.array([1.0, 1.0, 0.6])[view], _POSE_WIDTH[pose[trk]])
    flip = np.where(varied & (rng.random(n_frames) < 0.5), -1.0, 1.0)
    return {"view": view, "width": width, "flip": flip}


def _frame_persons(tracks: dict[str, np.ndarray], other: np.ndarray, miss_start: np.ndarray,
                   trk: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """People rows of the target and of the second person of every frame (-1: nobody).

    A target change swaps the two for the last third; a missing target leaves a third of the
    frames empty; multi-person and wrong-target tracklets show the other person.
    """
    nu = tracks["nuisance"]
    multi, change, miss, wrong = (nu[:, i].astype(bool) for i in (4, 6, 7, 8))
    length = tracks["length"]
    person = tracks["person"][trk].copy()
    changed = change[trk] & (t >= np.ceil(length[trk] * 2 / 3))
    person = np.where(changed, other[trk], person)
    present = person >= 0
    present &= ~(miss[trk] & (t >= miss_start[trk]) & (t < miss_start[trk] + length[trk] // 3))
    second = np.where(multi[trk] | wrong[trk], other[trk], -1)
    second = np.where(changed, tracks["person"][trk], second)
    return np.where(present, person, -1), second


def frame_parameters(rng: np.random.Generator, tracks: dict[str, np.ndarray], n_people: int,
                     cams: dict[str, np.ndarray], size: tuple[int, int]) -> dict[str, np.ndarray]:
    """Expand tracklet-level draws into per-frame rendering parameters.

    Args:
        rng: the dataset's generator.
        tracks: per tracklet ``person`` (index into the people table, -1 for no person),
            ``camera`` (0-based), ``length`` (frames) and ``nuisance`` (n, 9).
        n_people: size of the people table (other persons are drawn from it).
        cams: camera table of :func:`sample_cameras`.
        size: (H, W).

    Returns:
        Arrays with one entry per frame (F in all), in tracklet order: ``camera``, ``person``,
        ``second`` (people rows, -1 none), pixel geometry ``cx``, ``foot``, ``height``,
        ``second_dx``, pose ``mirror``, ``view``, ``width``, ``swing``, the scene window
        ``bg_shift``, occluder ``occluded``, ``occ_vertical``, ``occ_pos``, ``occ_width``,
        ``occ_rgb`` (F, 3), clutter ``clutter_on`` (F, N_CLUTTER), ``clutter`` (F, N_CLUTTER,
        4), ``clutter_rgb`` (F, N_CLUTTER, 3), ``flicker`` and ``noise_seed``.
    """
    h, w = size
    length = tracks["length"]
    nu = tracks["nuisance"]
    place = _tracklet_placement(rng, tracks, n_people, cams)
    scenery = _tracklet_scenery(rng, tracks, w)
    # Frame level: index of the tracklet and time within it.
    trk = np.repeat(np.arange(len(length)), length)
    t = np.arange(len(trk)) - np.repeat(np.cumsum(length) - length, length)
    move = _frame_motion(rng, nu[:, 0], place, trk, t, (length[trk] - 1) / 2.0)
    pose = _frame_pose(rng, nu[:, 1], trk)
    person, second = _frame_persons(tracks, place["other"], scenery["miss_start"], trk, t)
    return {
        "camera": tracks["camera"][trk],
        "person": person,
        "second": second,
        "cx": ((place["cx"][trk] + move["drift"]) * w).astype(np.float32),
        "foot": ((place["foot"][trk] - move["bob"]) * h).astype(np.float32),
        "height": (0.9 * h * place["scale"][trk]).astype(np.float32),
        "second_dx": (place["other_dx"][trk] * w).astype(np.float32),
        "mirror": (place["mirror"][trk] * pose["flip"]).astype(np.float32),
        "view": pose["view"],
        "width": pose["width"].astype(np.float32),
        "swing": move["swing"].astype(np.float32),
        "bg_shift": scenery["bg_shift"][trk],
        "occluded": nu[trk, 2].astype(bool),
        "occ_vertical": scenery["occ_vertical"][trk],
        "occ_pos": scenery["occ_pos"][trk].astype(np.float32),
        "occ_width": scenery["occ_width"][trk].astype(np.float32),
        "occ_rgb": scenery["occ_rgb"][trk].astype(np.float32),
        "clutter_on": scenery["clutter_on"][trk],
        "clutter": scenery["clutter"][trk].astype(np.float32),
        "clutter_rgb": scenery["clutter_rgb"][trk].astype(np.float32),
        "flicker": rng.uniform(0.95, 1.05, len(trk)).astype(np.float32),
        "noise_seed": rng.integers(0, 2**31 - 1, len(trk)),
    }


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


def _mars_tracklets(rng: np.random.Generator, train: tuple[np.ndarray, np.ndarray],
                    test: tuple[np.ndarray, np.ndarray], extra: np.ndarray,
                    n_cams: int) -> dict[str, np.ndarray]:
    """The MARS tracklet table: train, then test junk (pid -1), distractors (pid 0) and
    identities; the queries follow the MARS rule (:func:`_mars_queries`)."""
    n_test = len(np.unique(test[0]))
    n_junk, n_dis = max(2, n_test // 4), max(2, n_test // 2)
    junk_cam = np.sort(rng.integers(1, n_cams + 1, n_junk))
    dis_cam = np.sort(rng.integers(1, n_cams + 1, n_dis))
    pid = np.concatenate([train[0], -np.ones(n_junk, int), np.zeros(n_dis, int), test[0]])
    cam = np.concatenate([train[1], junk_cam, dis_cam, test[1]])
    split = np.r_[np.zeros(len(train[0]), int), np.ones(len(pid) - len(train[0]), int)]
    person = np.where(pid > 0, pid - 1, -1)
    person[pid == 0] = extra[:n_dis]
    query = np.zeros(len(pid), bool)
    test_rows = np.flatnonzero(split == 1)
    query[test_rows[_mars_queries(pid[test_rows], cam[test_rows])]] = True
    return {"split": split, "pid": pid, "camid": cam, "tnum": _running_number(pid),
            "person": person, "query": query}


def _duke_tracklets(rng: np.random.Generator, train: tuple[np.ndarray, np.ndarray],
                    test: tuple[np.ndarray, np.ndarray], extra: np.ndarray, n_cams: int,
                    ids: int, k: int) -> dict[str, np.ndarray]:
    """The Duke tracklet table: train, test identities (the first tracklet of each is the
    query), then gallery-only identities; tracklet numbers run over the whole dataset."""
    n_test = len(np.unique(test[0]))
    n_dis = max(1, n_test // 4)  # gallery-only identities, as in the real gallery
    dis_pid = ids + 1 + np.arange(n_dis)
    pid = np.concatenate([train[0], test[0], dis_pid])
    cam = np.concatenate([train[1], test[1], rng.integers(1, n_cams + 1, n_dis)])
    split = np.r_[np.zeros(len(train[0]), int), np.ones(len(pid) - len(train[0]), int)]
    person = pid - 1
    person[pid > ids] = extra[:n_dis]
    query = np.zeros(len(pid), bool)
    query[len(train[0]) + np.arange(n_test) * k] = True  # first tracklet of each test id
    return {"split": split, "pid": pid, "camid": cam, "tnum": np.arange(1, len(pid) + 1),
            "person": person, "query": query}


def plan_dataset(rng: np.random.Generator, fmt: str, ids: int, k: int,
                 frames: int) -> tuple[dict[str, np.ndarray], int]:
    """Decide every tracklet of the dataset.

    Args:
        rng: the dataset's generator.
        fmt: a key of :data:`FORMATS`.
        ids: identities (half train, half test).
        k: tracklets per identity.
        frames: mean frames per tracklet.

    Returns:
        (tracks, n_people): per tracklet ``split`` (0 train, 1 test), ``pid``, ``camid``
        (1-based), ``tnum`` (tracklet number), ``person`` (index into the people table, -1
        none), ``query`` (bool), ``nuisance`` (n, 9), ``length``, ``has_row`` (bool: gets a
        CSV row: every identity, and in the folder format also the distractors, pid 0, which
        are an ordinary gallery identity there); and the number of people to draw
        (identities first, then extra persons).
    """
    n_train = ids // 2
    n_cams = FORMATS[fmt]["cameras"]
    perm = rng.permutation(ids) + 1
    train_pids, test_pids = np.sort(perm[:n_train]), np.sort(perm[n_train:])
    train = _identity_tracklets(rng, train_pids, k, n_cams)
    test = _identity_tracklets(rng, test_pids, k, n_cams)
    n_extra_people = max(ids, 8)
    extra = ids + rng.integers(0, n_extra_people, 4 * ids + 16)  # persons that are no identity
    if FORMATS[fmt]["like"] == "mars":
        tracks = _mars_tracklets(rng, train, test, extra, n_cams)
    else:
        tracks = _duke_tracklets(rng, train, test, extra, n_cams, ids, k)
    pid = tracks["pid"]
    nuisance = _sample_nuisance(rng, len(pid), format_schema(fmt), FORMATS[fmt]["binary_p"])
    nuisance[pid == -1, 2:] = 0
    nuisance[pid == -1, 4:6] = 1  # junk: background and a stray person at the border
    nuisance[pid == 0, 3] = 1  # distractors: partial detections
    spread = frames // 4
    length = rng.integers(frames - spread, frames + spread + 1, len(pid))
    tracks.update(nuisance=nuisance, length=length,
                  has_row=pid >= 0 if fmt == "folder" else pid > 0)
    return tracks, ids + n_extra_people
