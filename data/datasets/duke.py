"""DukeMTMC-VideoReID (Wu et al., CVPR 2018) with the attribute annotations of the AITL paper.

Reference: Y. Wu et al., "Exploit the Unknown Gradually: One-Shot Video-Based Person
Re-Identification by Stepwise Learning", CVPR 2018.

Layout::

    root/train/<pid>/<tracklet>/PPPP_Cc_Ffff_X....jpg     (camera digit at index 6, 1-based)
    root/query/<pid>/<tracklet>/...
    root/gallery/<pid>/<tracklet>/...   (also holds every query tracklet)
    root/duke_attributes.csv

The tracklet number of the attribute lookup is the tracklet folder's name. The evaluated
gallery is the whole gallery folder. Published counts: :attr:`DukeVideo.published_statistics`.
"""

from __future__ import annotations

import os

import numpy as np

from data.attributes import DUKE_SCHEMA, AttributeFixes
from data.datasets.base import (
    SPLIT_FOLDERS,
    ParsedSplit,
    TrackletKey,
    VideoReIDDataset,
    make_tracklets,
    path_parts,
    sorted_entries,
)
from utils.errors import UserError

__all__ = ["DukeVideo", "scan_tracklet_folders"]



def _numeric_dirs(path: str) -> list[os.DirEntry]:
    entries = sorted_entries(path, dirs=True)
    for e in entries:
        if not e.name.isdigit():
            raise UserError(f"'{e.path}': expected <pid>/<tracklet>/ folders with numeric "
                            "names. Fix: remove the folder or re-extract the dataset.")
    return entries


def scan_tracklet_folders(split_dir: str) -> list[tuple[int, int, str, list[str]]]:
    """Every ``<pid>/<tracklet>/`` folder of ``split_dir`` with its sorted image names.

    Args:
        split_dir: a folder of pid folders, each holding tracklet folders of images.

    Returns:
        ``(pid, tracklet number, folder path, image names)`` per tracklet, in sorted folder
        order.

    Raises:
        UserError: a pid or tracklet folder name that is not a number, or an empty tracklet.
    """
    out = []
    for pid_entry in _numeric_dirs(split_dir):
        for tr_entry in _numeric_dirs(pid_entry.path):
            names = [e.name for e in sorted_entries(tr_entry.path, dirs=False)]
            if not names:
                raise UserError(f"Tracklet folder '{tr_entry.path}' holds no image. Fix: "
                                "re-extract the dataset or remove the folder.")
            out.append((int(pid_entry.name), int(tr_entry.name), tr_entry.path, names))
    return out


def _duke_split(root: str, split: str) -> tuple[list[tuple[str, ...]], list[TrackletKey]]:
    """Frame paths and :attr:`Tracklet.key` of every tracklet of one split folder.

    The image names are checked as one character matrix: within a tracklet they must share
    pid and camera (``PPPP_Cc``), and the pid must be the folder's.
    """
    split_dir = os.path.join(root, split)
    folders = scan_tracklet_folders(split_dir)
    if not folders:
        raise UserError(f"'{split_dir}' holds no <pid>/<tracklet>/ folder. Fix: re-extract "
                        "DukeMTMC-VideoReID.zip.")
    all_names = [n for *_, names in folders for n in names]
    lengths = np.array([len(names) for *_, names in folders])
    chars = np.array(all_names)
    chars = chars.view(np.uint32).reshape(len(all_names), -1)[:, :7]  # (F, 7) code points
    firsts = np.cumsum(lengths) - lengths                               # (N,)
    differs = (chars != np.repeat(chars[firsts], lengths, axis=0)).any(axis=1)
    head = chars[firsts].astype(np.int64)                               # (N, 7)
    digits = head[:, [0, 1, 2, 3, 6]] - ord("0")
    well_formed = ((digits >= 0) & (digits <= 9)).all(axis=1) & (head[:, 4] == ord("_")) \
        & (head[:, 5] == ord("C"))
    pids = np.array([f[0] for f in folders])
    name_pid = digits[:, :4] @ np.array([1000, 100, 10, 1])
    bad = ~well_formed | (name_pid != pids) | (digits[:, 4] < 1)
    if differs.any() or bad.any():
        i = int(np.argmax(bad)) if bad.any() else int(
            np.searchsorted(np.cumsum(lengths), int(np.argmax(differs)), side="right"))
        _, _, folder, names = folders[i]
        raise UserError(f"Tracklet folder '{folder}' "
                        f"(image {names[0]}): every image of a tracklet must be named "
                        "PPPP_Cc_... with the folder's pid and one camera c >= 1. Fix: "
                        "re-extract DukeMTMC-VideoReID.zip.")
    sep = os.sep
    paths = [tuple(f"{folder}{sep}{n}" for n in names) for *_, folder, names in folders]
    keys = list(zip(pids.tolist(), digits[:, 4].tolist(), [f[1] for f in folders], strict=True))
    return paths, keys


class DukeVideo(VideoReIDDataset):
    """The DukeMTMC-VideoReID dataset (train / query / gallery tracklets and attributes).

    Train pids are relabelled 0..N-1 in sorted order; cameras become 0-based. The gallery is
    the whole gallery folder (the query tracklets are in it, as in the official protocol).
    Every train and query tracklet must have an attribute row. Built as
    ``DukeVideo(root, attributes=True, verbose=True)`` (see :class:`VideoReIDDataset`;
    ``root``: the DukeMTMC-VideoReID folder, its layout in the module docstring;
    ``attributes``: read ``duke_attributes.csv``).
    """

    name = "DukeMTMC-VideoReID"
    attribute_schema = DUKE_SCHEMA
    attribute_file = "duke_attributes.csv"
    published_statistics = {"train": (702, 2196, None), "query": (702, 702, None),
                            "gallery": (1110, 2636, None)}
    standard_train_pids = published_statistics["train"][0]
    attribute_fixes = AttributeFixes.download(attribute_file)
    files_fix = ("Get DukeMTMC-VideoReID.zip from https://github.com/Yu-Wu/DukeMTMC-VideoReID "
                 "and duke_attributes.csv from the AITL code release; arrange them as described "
                 "in the README (Data preparation), and set DATASETS.ROOT_DIR to the folder that "
                 "holds them.")
    archive = "DukeMTMC-VideoReID.zip"

    @classmethod
    def holds_frame(cls, path: str) -> bool:
        """``.../<train|query|gallery>/<pid>/<tracklet>/<frame>``, pid and tracklet numbers."""
        parts = path_parts(path)
        return (len(parts) >= 4 and parts[-4] in SPLIT_FOLDERS and parts[-3].isdigit()
                and parts[-2].isdigit())

    def _parse(self, root: str, attributes: bool) -> ParsedSplit:
        matcher = self._check_files(root, [(os.path.join(root, s), "dir") for s in SPLIT_FOLDERS],
                                    attributes)
        return (*make_tracklets({s: _duke_split(root, s) for s in SPLIT_FOLDERS}, matcher),
                self.attribute_schema if attributes else None)
