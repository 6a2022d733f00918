"""MARS (Zheng et al., ECCV 2016) with the attribute annotations of the AITL paper.

Reference: L. Zheng et al., "MARS: A Video Benchmark for Large-Scale Person
Re-Identification", ECCV 2016.

Layout::

    root/bbox_train/<pid4>/<name>   root/bbox_test/<pid4>/<name>
    root/info/train_name.txt  test_name.txt           (one image name per line)
    root/info/tracks_train_info.mat  (track_train_info: N x 4 [start, end, pid, camid])
    root/info/tracks_test_info.mat   (track_test_info)
    root/info/query_IDX.mat          (query_IDX: 1-based rows of the test table)
    root/mars_attributes.csv

The real split gives the published counts (:attr:`Mars.published_statistics`) after dropping
the junk tracklets (pid -1); 3248 of its gallery tracklets are distractors (pid 0).

Parsing is vectorised: the name lists are read with one ``split()`` each and checked as a
character matrix (one pid, one camera and one tracklet number per track row) with numpy; only
the path strings are built in Python.
"""

from __future__ import annotations

import os

import numpy as np
import scipy.io as sio

from data.attributes import MARS_SCHEMA, AttributeFixes
from data.datasets.base import (
    ParsedSplit,
    TrackletKey,
    VideoReIDDataset,
    make_tracklets,
    path_parts,
)
from utils.errors import UserError

__all__ = ["Mars"]

_FILES_FIX = ("Get the images (bbox_train.zip, bbox_test.zip) from the MARS page "
              "(http://zheng-lab.cecs.anu.edu.au/Project/project_mars.html), the info/ files from "
              "https://github.com/liangzheng06/MARS-evaluation and mars_attributes.csv from the "
              "AITL code release; arrange them as described in the README (Data preparation), "
              "and set DATASETS.ROOT_DIR to the folder that holds them.")
# Image name PPPPCcTttttFfff.jpg: the first 11 characters identify the tracklet.
_KEY_CHARS = 11
_DIGIT_WEIGHTS = np.array([1000, 100, 10, 1], dtype=np.int64)


def _read_names(path: str) -> np.ndarray:
    """The image names of a name list as a zero-padded uint8 character matrix (n, width)."""
    with open(path, "rb") as f:
        raw = f.read()
    width = raw.find(b"\n")
    lines = np.frombuffer(raw, np.uint8)
    if (width > 0 and raw[width - 1] != ord("\r") and len(raw) % (width + 1) == 0
            and (lines[width::width + 1] == 10).all()):
        chars = lines.reshape(-1, width + 1)[:, :width]                 # one name per line
    else:                                                              # general whitespace
        names_b = raw.split()
        chars = np.array(names_b) if names_b else np.zeros((0, 0), np.uint8)
        chars = chars.view(np.uint8).reshape(len(names_b), chars.dtype.itemsize)
    if chars.shape[0] == 0:
        raise UserError(f"MARS name list '{path}' is empty. Fix: re-download the info/ files.")
    if chars.shape[1] < _KEY_CHARS + 1:
        bad = np.ones(len(chars), dtype=bool)
    else:
        digits = chars[:, [5, 7, 8, 9, 10]]
        bad = ((chars[:, 4] != ord("C")) | (chars[:, 6] != ord("T"))
               | (chars[:, _KEY_CHARS] != ord("F")) | (chars > 127).any(axis=1)
               | ((digits < ord("0")) | (digits > ord("9"))).any(axis=1))
    if bad.any():
        i = int(np.argmax(bad))
        raise UserError(f"MARS name list '{path}', name {i + 1}: {_name(chars, i)!r} is not a "
                        "MARS image name (PPPPCcTttttFfff.jpg). Fix: re-download the info/ files.")
    return chars


def _name(chars: np.ndarray, i: int) -> str:
    """Name ``i`` of a character matrix."""
    return chars[i].tobytes().rstrip(b"\0").decode("ascii", errors="replace")


def _image_paths(image_dir: str, chars: np.ndarray) -> list[str]:
    """``<image_dir>/<name[:4]>/<name>`` for every name, built as one byte matrix."""
    n, width = chars.shape
    sep = os.sep.encode()
    if not (chars[:, -1] != 0).all():                                  # names of unequal length
        names = [row.tobytes().rstrip(b"\0").decode() for row in chars]
        return [f"{image_dir}{os.sep}{m[:4]}{os.sep}{m}" for m in names]
    prefix = np.frombuffer(os.fsencode(image_dir) + sep, np.uint8)
    p = len(prefix)
    out = np.empty((n, p + 5 + width + 1), np.uint8)                  # path + NUL separator
    out[:, :p] = prefix
    out[:, p:p + 4] = chars[:, :4]
    out[:, p + 4] = sep[0]
    out[:, p + 5:-1] = chars
    out[:, -1] = 0
    return os.fsdecode(out.tobytes()).split("\0")[:-1]


def _load_mat(path: str, key: str) -> np.ndarray:
    try:
        mat = sio.loadmat(path)
    except (OSError, ValueError) as e:
        raise UserError(f"Cannot read '{path}': {e}. Fix: re-download the MARS info/ files.") \
            from None
    if key not in mat:
        raise UserError(f"'{path}' has no variable '{key}' (it holds "
                        f"{sorted(k for k in mat if not k.startswith('__'))}). Fix: re-download "
                        "the MARS info/ files.")
    return np.asarray(mat[key]).astype(np.int64)


def _load_tracks(path: str, key: str, num_names: int, names_path: str) -> np.ndarray:
    """Track table (N, 4) [start, end, pid, camid], validated against the name list."""
    table = _load_mat(path, key)
    if table.ndim != 2 or table.shape[1] != 4:
        raise UserError(f"'{path}' ({key}) must be an N x 4 table [start, end, pid, camid]; got "
                        f"shape {table.shape}. Fix: re-download the MARS info/ files.")
    start, end = table[:, 0], table[:, 1]
    bad = (start < 1) | (end < start) | (end > num_names)
    if bad.any():
        i = int(np.argmax(bad))
        raise UserError(f"'{path}' row {i + 1}: frames {start[i]}..{end[i]} are outside the "
                        f"{num_names} names of '{names_path}'. Fix: use the info/ files of one "
                        "MARS release.")
    return table


def _parse_tracks(table: np.ndarray, chars: np.ndarray, image_dir: str,
                  table_path: str) -> tuple[list[tuple[str, ...]], np.ndarray]:
    """Frame paths of every track row, and its tracklet number from the image names.

    Checks, vectorised over all frames, that each row's names share pid, camera and
    tracklet number, and that these match the row's pid and camera.

    Returns:
        (paths per row, tracklet numbers (N,) int64).
    """
    starts = table[:, 0] - 1                                           # 0-based, (N,)
    lengths = table[:, 1] - table[:, 0] + 1                            # (N,)
    first_of_frame = np.repeat(starts, lengths)                        # (F,)
    offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    frames = first_of_frame + offsets                                  # (F,) name index
    differs = (chars[frames, :_KEY_CHARS] != chars[first_of_frame, :_KEY_CHARS]).any(axis=1)
    pid, cam = table[:, 2], table[:, 3]
    head = chars[starts].astype(np.int64)                              # (N, width)
    pid_digits = (np.abs(pid)[:, None] // _DIGIT_WEIGHTS % 10) + ord("0")
    pid_ok = np.where(pid[:, None] == -1, np.frombuffer(b"00-1", np.uint8)[None, :],
                      pid_digits) == head[:, :4]
    row_bad = ~pid_ok.all(axis=1) | (head[:, 5] - ord("0") != cam) | (cam < 1)
    if differs.any() or row_bad.any():
        if differs.any():
            f = int(np.argmax(differs))
            row = int(np.searchsorted(np.cumsum(lengths), f, side="right"))
            what = (f"name {_name(chars, frames[f])} differs from the row's first name "
                    f"{_name(chars, starts[row])}")
        else:
            row = int(np.argmax(row_bad))
            what = (f"the row has pid {pid[row]}, camera {cam[row]} but its first name is "
                    f"{_name(chars, starts[row])}")
        raise UserError(f"'{table_path}' row {row + 1}: {what}; every track row must hold one "
                        "pid, one camera and one tracklet. Fix: use the info/ files of one MARS "
                        "release.")
    tracklet_ids = (head[:, 7:11] - ord("0")) @ _DIGIT_WEIGHTS           # (N,)
    paths = _image_paths(image_dir, chars)
    ends = (starts + lengths).tolist()
    return [tuple(paths[s:e]) for s, e in zip(starts.tolist(), ends, strict=True)], tracklet_ids


class Mars(VideoReIDDataset):
    """The MARS dataset (train / query / gallery tracklets and attributes).

    Query = the test rows listed in ``query_IDX``; gallery = the other test rows. Junk
    tracklets (pid -1) are dropped; distractors (pid 0) stay in the gallery with unknown
    attributes. Train pids are relabelled 0..624 in sorted order; cameras become 0-based.
    Every train and query tracklet must have an attribute row. Built as
    ``Mars(root, attributes=True, verbose=True)`` (see :class:`VideoReIDDataset`; ``root``:
    the MARS folder, its layout in the module docstring; ``attributes``: read
    ``mars_attributes.csv``).
    """

    name = "MARS"
    attribute_schema = MARS_SCHEMA
    attribute_file = "mars_attributes.csv"
    # After dropping the junk tracklets; the gallery's 621 ids count the distractors' 0.
    published_statistics = {"train": (625, 8298, 509914), "query": (626, 1980, None),
                            "gallery": (621, 9330, None)}
    standard_train_pids = published_statistics["train"][0]
    attribute_fixes = AttributeFixes.download(attribute_file)
    files_fix = _FILES_FIX
    archive = "bbox_train.zip and bbox_test.zip"
    _IMAGE_DIRS = ("bbox_train", "bbox_test")

    @classmethod
    def frame_fix(cls, path: str) -> str:
        """Restore the frame from its archive (bbox_train.zip or bbox_test.zip)."""
        parts = path_parts(path)
        archive = next((f"{d}.zip" for d in cls._IMAGE_DIRS if d in parts), "the MARS archives")
        return (f"restore the file(s) from {archive} (re-extract it), or remove the tracklet "
                "from the split files")

    @classmethod
    def holds_frame(cls, path: str) -> bool:
        """``.../bbox_train/<pid>/<frame>`` or ``.../bbox_test/<pid>/<frame>``."""
        parts = path_parts(path)
        return len(parts) >= 3 and parts[-3] in cls._IMAGE_DIRS

    def _parse(self, root: str, attributes: bool) -> ParsedSplit:
        info = os.path.join(root, "info")
        files = {k: os.path.join(info, k) for k in
                 ("train_name.txt", "test_name.txt", "tracks_train_info.mat",
                  "tracks_test_info.mat", "query_IDX.mat")}
        matcher = self._check_files(root, [*((os.path.join(root, d), "dir")
                                             for d in self._IMAGE_DIRS),
                                           *((p, "file") for p in files.values())], attributes)
        subsets = {}
        for split, key, bbox in (("train", "track_train_info", "bbox_train"),
                                 ("test", "track_test_info", "bbox_test")):
            names_path = files[f"{split}_name.txt"]
            table_path = files[f"tracks_{split}_info.mat"]
            chars = _read_names(names_path)
            table = _load_tracks(table_path, key, len(chars), names_path)
            paths, tids = _parse_tracks(table, chars, os.path.join(root, bbox), table_path)
            subsets[split] = (paths, table[:, 2], table[:, 3], tids)

        n_test = len(subsets["test"][0])
        query_rows = _query_rows(files["query_IDX.mat"], n_test)
        is_query = np.zeros(n_test, dtype=bool)
        is_query[query_rows] = True
        rows = {"train": ("train", np.arange(len(subsets["train"][0]))),
                "query": ("test", query_rows), "gallery": ("test", np.flatnonzero(~is_query))}
        return (*make_tracklets({s: _tracks(subsets[split], r) for s, (split, r) in rows.items()},
                                matcher), self.attribute_schema if attributes else None)


def _query_rows(path: str, n_test: int) -> np.ndarray:
    """The 0-based test-table rows that ``query_IDX`` lists, in its order."""
    query_rows = _load_mat(path, "query_IDX").ravel() - 1
    if query_rows.size == 0 or query_rows.min() < 0 or query_rows.max() >= n_test:
        raise UserError(f"'{path}' must list 1-based rows of the {n_test}-row test table. "
                        "Fix: use the info/ files of one MARS release.")
    return query_rows


def _tracks(subset: tuple, rows: np.ndarray) -> tuple[list[tuple[str, ...]], list[TrackletKey]]:
    """Frame paths and keys of the given track rows (in row order), junk (pid -1) dropped.

    Args:
        subset: (paths per row, pids, 1-based cameras, tracklet numbers) of a track table.
        rows: the rows to take.
    """
    paths, pids, cams, tids = subset
    rows = rows[pids[rows] != -1]
    keys = list(zip(pids[rows].tolist(), cams[rows].tolist(), tids[rows].tolist(), strict=True))
    return [paths[r] for r in rows.tolist()], keys
