"""Writing a planned and rendered synthetic dataset in the MARS, Duke or folder layout.

The output folder is checked first (a file, a foreign folder, a different synthetic dataset
without ``overwrite``, a place that cannot be written: each a :class:`UserError` before any
work). The images go to a temporary sibling folder; the split files, the attribute files and
last the marker file (:data:`MARKER_NAME`) follow, and the folder is then renamed into place,
so an interrupted write never looks like a complete dataset.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.io as sio
from PIL import Image

from data.attributes import KEY_COLUMNS, AttributeSchema, write_attribute_schema
from data.datasets import DATASETS, FolderDataset
from data.verification import SYNTHETIC_MARKER as MARKER_NAME
from tools.synthetic.plan import (
    CSV_TRAITS,
    FORMATS,
    format_schema,
    frame_parameters,
    plan_dataset,
    sample_cameras,
    sample_people,
)
from tools.synthetic.render import camera_scenes, render_chunk
from utils.errors import UserError

__all__ = ["MARKER_NAME", "write_synthetic_dataset"]

_PIXELS_PER_CHUNK = 2**18  # pixels rendered at once (small chunks stay in cache)
_JPEG_QUALITY = 90
_VERSION = 1


def _tracklet_files(fmt: str, tracks: dict[str, np.ndarray], i: int,
                    rng: np.random.Generator) -> list[list[str]]:
    """Relative paths of the frames of tracklet ``i``, one list per frame (a Duke query is in
    two folders)."""
    pid, cam, tnum = (int(tracks[k][i]) for k in ("pid", "camid", "tnum"))
    n, test, query = int(tracks["length"][i]), tracks["split"][i] == 1, tracks["query"][i]
    if fmt == "mars":
        folder = "bbox_test" if test else "bbox_train"
        p4 = "00-1" if pid == -1 else f"{pid:04d}"
        return [[f"{folder}/{p4}/{p4}C{cam}T{tnum:04d}F{f:03d}.jpg"] for f in range(1, n + 1)]
    if fmt == "folder":
        split = "train" if not test else "query" if query else "gallery"
        return [[f"{split}/{_folder_pid(pid)}/{_folder_tracklet(cam, tnum)}/{f:04d}.jpg"]
                for f in range(1, n + 1)]
    folders = ["query", "gallery"] if query else ["gallery"] if test else ["train"]
    source = int(rng.integers(0, 90000))  # the frame's number in its source video
    return [[f"{d}/{pid:04d}/{tnum:04d}/{pid:04d}_C{cam}_F{f:04d}_X{source + f:05d}.jpg"
             for d in folders] for f in range(1, n + 1)]


def _folder_pid(pid: int) -> str:
    """The pid folder name of the folder format (junk, pid -1, as "-1")."""
    return str(pid) if pid < 0 else f"{pid:04d}"


def _folder_tracklet(cam: int, tnum: int) -> str:
    """The tracklet folder name of the folder format, ``<camid>_<tracklet>``."""
    return f"{cam}_{tnum:04d}"


def _frame_files(fmt: str, tracks: dict[str, np.ndarray],
                 rng: np.random.Generator) -> list[list[str]]:
    """Relative paths of every frame, one list per frame, in tracklet order."""
    return [paths for i in range(len(tracks["pid"])) for paths in
            _tracklet_files(fmt, tracks, i, rng)]


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


def _write_csv(path: Path, fmt: str, schema: AttributeSchema, tracks: dict[str, np.ndarray],
               people: dict[str, np.ndarray]) -> None:
    """The attribute CSV: the key columns and the schema's columns, one row per tracklet that
    has one (the ID-irrelevant values of the tracklet, the traits of its person).

    The keys are :data:`KEY_COLUMNS` ``(pid, camera, tracklet number)``, in the folder format
    :attr:`FolderDataset.key_columns` ``(pid, camid, tracklet folder name)``.
    """
    rows = np.flatnonzero(tracks["has_row"])
    person = tracks["person"][rows]
    traits = [CSV_TRAITS[c] for c in schema.groups[1]]
    attrs = np.concatenate([tracks["nuisance"][rows],
                            np.stack([people[t][person] for t in traits], 1)], axis=1)
    pid, cam, tnum = (tracks[k][rows].tolist() for k in ("pid", "camid", "tnum"))
    if fmt == "folder":
        header = FolderDataset.key_columns
        keys = [(p, c, _folder_tracklet(c, t)) for p, c, t in zip(pid, cam, tnum, strict=True)]
    else:
        header, keys = KEY_COLUMNS, list(zip(pid, cam, tnum, strict=True))
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)  # "\r\n" line ends, as the real files
        writer.writerow((*header, *schema.names))
        writer.writerows((*k, *a) for k, a in zip(keys, attrs.tolist(), strict=True))


def _check_arguments(fmt: str, ids: int, tracklets: int, frames: int,
                     size: Sequence[int]) -> tuple[int, int]:
    """Raise a :class:`UserError` for arguments out of range; return (H, W)."""
    if fmt not in FORMATS:
        raise UserError(f"Unknown synthetic dataset format {fmt!r}; use one of "
                        f"{', '.join(FORMATS)}.")
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


def _read_marker(path: Path) -> dict | None:
    """The arguments a previous synthetic dataset was written with (None: unreadable)."""
    try:
        marker = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


def _check_target(out: Path, marker: dict, overwrite: bool) -> None:
    """Refuse a file, a non-empty folder that is not a previous synthetic dataset, and (unless
    ``overwrite``) a synthetic dataset written with other arguments than ``marker``'s."""
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} exists and is not a folder; choose another output folder.")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not (out / MARKER_NAME).is_file():
        raise UserError(
            f"Refusing to write a synthetic dataset into {out}: the folder is not empty and is "
            f"not a previous synthetic dataset (no {MARKER_NAME}). Choose a new or empty folder.")
    previous = _read_marker(out / MARKER_NAME) or {}
    if previous != marker and not overwrite:
        changes = ", ".join(f"{k} {previous.get(k)} -> {marker[k]}" for k in marker
                            if previous.get(k) != marker[k])
        raise UserError(f"Refusing to replace the synthetic dataset in {out} by one with other "
                        f"arguments ({changes}). Pass --overwrite (overwrite=True) to replace it, "
                        "or choose another folder.")


def _cannot_write(out: Path, err: OSError) -> UserError:
    """The error for an output place that cannot be written."""
    where = f"{err.filename}: " if err.filename else ""
    return UserError(f"Cannot write the synthetic dataset to {out} ({where}"
                     f"{err.strerror or err}). Choose an output folder you can write to.")


def _make_temporary(out: Path, token: str) -> Path:
    """Create the parents of ``out`` and the temporary sibling folder the dataset is written to.

    Raises:
        UserError: a parent is a file, or the folder cannot be created (read-only place).
    """
    existing = out.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"Cannot write the synthetic dataset to {out}: {existing} is a file, "
                        "not a folder. Choose another output folder.")
    tmp = out.parent / f".{out.name}.tmp-{token}"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
    except OSError as e:
        raise _cannot_write(out, e) from None
    return tmp


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


def _replace(out: Path, tmp: Path, token: str, marker: dict, overwrite: bool) -> None:
    """Rename the finished ``tmp`` to ``out``, replacing a previous synthetic dataset."""
    _check_target(out, marker, overwrite)
    if out.exists():
        old = out.parent / f".{out.name}.old-{token}"
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old)
    else:
        tmp.rename(out)


def _write_files(root: Path, fmt: str, ids: int, tracklets: int, frames: int,
                 size: tuple[int, int], seed: int, attributes: bool) -> None:
    """Plan, render and write every file of the dataset (but the marker) under ``root``."""
    schema = format_schema(fmt)
    rng = np.random.default_rng(seed)
    tracks, n_people = plan_dataset(rng, fmt, ids, tracklets, frames)
    people = sample_people(rng, n_people, schema)
    cams = sample_cameras(rng, FORMATS[fmt]["cameras"])
    fp = frame_parameters(rng, {**tracks, "camera": tracks["camid"] - 1}, n_people, cams, size)
    scenes = camera_scenes(rng, cams, size)
    files = _frame_files(fmt, tracks, rng)
    _write_images(root, files, fp, people, cams, scenes, size)
    if fmt == "mars":
        _write_mars_info(root, tracks, files)
    if attributes:
        _write_csv(root / DATASETS[fmt].attribute_file, fmt, schema, tracks, people)
        if fmt == "folder":
            write_attribute_schema(str(root / FolderDataset.schema_file), schema)


def write_synthetic_dataset(out: str | Path, fmt: str = "mars", ids: int = 40,
                            tracklets: int = 4, frames: int = 8,
                            size: tuple[int, int] = (64, 32), seed: int = 0,
                            attributes: bool = True, overwrite: bool = False) -> Path:
    """Write a synthetic video re-ID dataset in the MARS, DukeMTMC-VideoReID or folder layout.

    The same arguments give byte-identical files. A previous synthetic dataset at ``out``
    written with the same arguments is rewritten; one written with other arguments is replaced
    only with ``overwrite``; any other non-empty folder is refused.

    Args:
        out: dataset root to create (its parent folders are created as needed).
        fmt: "mars", "duke" or "folder" (:mod:`data.datasets.folder`, following MARS's split
            plan: its junk tracklets in ``gallery/-1/``, its distractors as gallery pid 0).
        ids: identities, half for training and half for testing (the test split adds junk and
            distractor tracklets for MARS and folder, gallery-only identities for Duke).
        tracklets: tracklets per identity (>= 2), spread over at least two cameras.
        frames: mean frames per tracklet; lengths vary by up to ``frames // 4``.
        size: (height, width) of the frames in pixels.
        seed: seed of every random draw.
        attributes: write the attribute CSV (and, for "folder", attributes.yml).
        overwrite: replace a synthetic dataset written with other arguments.

    Returns:
        The dataset root ``out``.

    Raises:
        UserError: arguments out of range; ``out`` is a file, a foreign non-empty folder, a
            different synthetic dataset (without ``overwrite``) or not writable: all checked
            before any work; a write that fails (e.g. a full disk).

    Example:
        >>> root = write_synthetic_dataset("/tmp/mars_syn", "mars", ids=20)  # doctest: +SKIP
    """
    h, w = _check_arguments(fmt, ids, tracklets, frames, size)
    out = Path(out)
    target = Path(os.path.abspath(out))
    # "data.synthetic": the generator name every marker records (part of the format)
    marker = {"generator": "data.synthetic", "version": _VERSION, "format": fmt, "ids": ids,
              "tracklets": tracklets, "frames": frames, "size": [h, w], "seed": seed,
              "attributes": attributes}
    _check_target(target, marker, overwrite)
    token = uuid.uuid4().hex[:8]
    tmp = _make_temporary(target, token)
    try:
        _write_files(tmp, fmt, ids, tracklets, frames, (h, w), seed, attributes)
        (tmp / MARKER_NAME).write_text(json.dumps(marker, indent=1) + "\n")  # written last
        _replace(target, tmp, token, marker, overwrite)
    except OSError as e:
        raise _cannot_write(out, e) from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out
