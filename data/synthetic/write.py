"""Writing a planned and rendered synthetic dataset in the real MARS or Duke layout.

The images go to a temporary sibling folder; the split files, the attribute CSV and last the
marker file (:data:`MARKER_NAME`) follow, and the folder is then renamed into place, so an
interrupted write never looks like a complete dataset.
"""

from __future__ import annotations

import csv
import json
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.io as sio
from PIL import Image

from data.attributes import KEY_COLUMNS, AttributeSchema
from data.datasets import DATASET_CLASSES
from data.synthetic.plan import (
    CSV_TRAITS,
    FORMATS,
    frame_parameters,
    plan_dataset,
    sample_cameras,
    sample_people,
)
from data.synthetic.render import camera_scenes, render_chunk
from utils.errors import UserError

__all__ = ["MARKER_NAME", "write_synthetic_dataset"]

MARKER_NAME = "synthetic_dataset.json"
_PIXELS_PER_CHUNK = 2**18  # pixels rendered at once (small chunks stay in cache)
_JPEG_QUALITY = 90
_VERSION = 1


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
    """The ``info/`` folder of MARS: name lists, track tables and query indices."""
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


def _write_csv(path: Path, schema: AttributeSchema, tracks: dict[str, np.ndarray],
               people: dict[str, np.ndarray]) -> None:
    """The attribute CSV: :data:`KEY_COLUMNS` and the schema's columns, one row per tracklet
    of an identity (the ID-irrelevant values of the tracklet, the traits of its person)."""
    rows = np.flatnonzero(tracks["has_row"])
    person = tracks["person"][rows]
    traits = [CSV_TRAITS[c] for c in schema.groups[1]]
    table = np.concatenate(
        [np.stack([tracks["pid"][rows], tracks["camid"][rows], tracks["tnum"][rows]], 1),
         tracks["nuisance"][rows],
         np.stack([people[t][person] for t in traits], 1)], axis=1)
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)  # "\r\n" line ends, as the real files
        writer.writerow((*KEY_COLUMNS, *schema.names))
        writer.writerows(table.tolist())


def _check_arguments(fmt: str, ids: int, tracklets: int, frames: int,
                     size: Sequence[int]) -> tuple[int, int]:
    """Raise a :class:`UserError` for arguments out of range; return (H, W)."""
    if fmt not in FORMATS:
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
    """Refuse a file, or a non-empty folder that is not a previous synthetic dataset."""
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} exists and is not a folder; choose another output folder.")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER_NAME).is_file():
        raise UserError(
            f"Refusing to write a synthetic dataset into {out}: the folder is not empty and is "
            f"not a previous synthetic dataset (no {MARKER_NAME}). Choose a new or empty folder.")


def _write_images(root: Path, files: list[list[str]], fp: dict[str, np.ndarray],
                  people: dict[str, np.ndarray], cams: dict[str, np.ndarray],
                  scenes: np.ndarray, size: tuple[int, int]) -> None:
    """Render the frames (``fp``, one entry per ``files`` item) chunk by chunk and save each
    as JPEG at its paths under ``root``."""
    for folder in sorted({str(Path(f).parent) for paths in files for f in paths}):
        (root / folder).mkdir(parents=True)
    chunk = max(1, _PIXELS_PER_CHUNK // (size[0] * size[1]))
    for start in range(0, len(files), chunk):
        part = {k: v[start:start + chunk] for k, v in fp.items()}
        for paths, frame in zip(files[start:start + chunk],
                                render_chunk(part, people, cams, scenes)):
            image = Image.fromarray(frame)
            for rel in paths:
                image.save(root / rel, quality=_JPEG_QUALITY)


def _replace(out: Path, tmp: Path, token: str) -> None:
    """Rename the finished ``tmp`` to ``out``, replacing a previous synthetic dataset."""
    _check_target(out)
    if out.exists():
        old = out.parent / f".{out.name}.old-{token}"
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old)
    else:
        tmp.rename(out)


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

    Raises:
        UserError: arguments out of range, or ``out`` is a file or a foreign non-empty folder.

    Example:
        >>> root = write_synthetic_dataset("/tmp/mars_syn", "mars", ids=20)  # doctest: +SKIP
    """
    h, w = _check_arguments(fmt, ids, tracklets, frames, size)
    out = Path(out)
    _check_target(out)
    schema = DATASET_CLASSES[fmt].attribute_schema
    rng = np.random.default_rng(seed)
    tracks, n_people = plan_dataset(rng, fmt, ids, tracklets, frames)
    people = sample_people(rng, n_people, schema)
    cams = sample_cameras(rng, FORMATS[fmt]["cameras"])
    fp = frame_parameters(rng, {**tracks, "camera": tracks["camid"] - 1}, n_people, cams,
                          (h, w))
    scenes = camera_scenes(rng, cams, (h, w))
    files = _frame_files(fmt, tracks, rng)

    out.parent.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex[:8]
    tmp = out.parent / f".{out.name}.tmp-{token}"
    try:
        tmp.mkdir()
        _write_images(tmp, files, fp, people, cams, scenes, (h, w))
        if fmt == "mars":
            _write_mars_info(tmp, tracks, files)
        _write_csv(tmp / DATASET_CLASSES[fmt].attribute_file, schema, tracks, people)
        marker = {"generator": "data.synthetic", "version": _VERSION, "format": fmt,
                  "ids": ids, "tracklets": tracklets, "frames": frames, "size": [h, w],
                  "seed": seed}
        (tmp / MARKER_NAME).write_text(json.dumps(marker, indent=1) + "\n")  # written last
        _replace(out, tmp, token)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out
