"""iLIDS-VID (Wang et al., ECCV 2014), without attributes.

Reference: T. Wang et al., "Person Re-Identification by Video Ranking", ECCV 2014.

Layout (the official archive plus its split file)::

    root/i-LIDS-VID/sequences/cam1/personNNN/*.png
    root/i-LIDS-VID/sequences/cam2/personNNN/*.png
    root/train-test people splits/train_test_splits_ilidsvid.mat   (key ls_set)

``ls_set`` holds one row per split of 1-based indices into the sorted person folders of
``cam1``; split 0 is used: its first half are the training persons, the second half the test
persons. Train = both cameras of the training persons (pids relabelled in sorted order);
query = cam1 and gallery = cam2 of the test persons (pid = the folder's number).
"""

from __future__ import annotations

import os

import numpy as np
import scipy.io as sio

from data.datasets.base import (
    VideoReIDDataset,
    check_required_paths,
    path_parts,
    two_camera_split,
)
from utils.errors import UserError

__all__ = ["ILIDSVID"]

_WHERE = ("Get i-LIDS-VID.tar (it holds i-LIDS-VID/ and 'train-test people splits/') from "
          "https://xiatian-zhu.github.io/downloads_qmul_iLIDS-VID_ReID_dataset.html, extract it "
          "and set DATASETS.ROOT_DIR to the folder that holds both.")


class ILIDSVID(VideoReIDDataset):
    """iLIDS-VID, split 0 of the official splits (see the module docstring).

    Args:
        root: folder holding ``i-LIDS-VID/`` and ``train-test people splits/``.
        verbose: log the statistics table.
    """

    name = "iLIDS-VID"
    standard_train_pids = 150              # half of the 300 persons of the official splits

    @classmethod
    def frame_fix(cls, path: str) -> str:
        """Restore the frame from i-LIDS-VID.tar."""
        return "restore the file(s) from i-LIDS-VID.tar (re-extract it)"

    @classmethod
    def holds_frame(cls, path: str) -> bool:
        """``.../i-LIDS-VID/sequences/<camera>/<person>/<frame>``."""
        parts = path_parts(path)
        return len(parts) >= 5 and (parts[-5], parts[-4]) == ("i-LIDS-VID", "sequences")

    def __init__(self, root: str, verbose: bool = True) -> None:
        root = os.path.normpath(os.path.expanduser(root))
        cams = [os.path.join(root, "i-LIDS-VID", "sequences", c) for c in ("cam1", "cam2")]
        split_path = os.path.join(root, "train-test people splits",
                                  "train_test_splits_ilidsvid.mat")
        check_required_paths("iLIDS-VID", [(cams[0], "dir"), (cams[1], "dir"),
                                           (split_path, "file")], _WHERE)
        persons = sorted(d for d in os.listdir(cams[0]) if os.path.isdir(os.path.join(cams[0], d)))
        try:
            splits = np.atleast_2d(sio.loadmat(split_path)["ls_set"]).astype(np.int64)
        except (OSError, ValueError, KeyError) as e:
            raise UserError(f"Cannot read 'ls_set' from '{split_path}': {e}. Fix: re-extract "
                            "i-LIDS-VID.tar.") from None
        order = splits[0] - 1                                   # split 0, 0-based person indices
        if order.size < 2 or order.min() < 0 or order.max() >= len(persons):
            raise UserError(f"'{split_path}' (ls_set) indexes persons 1..{order.max() + 1} but "
                            f"'{cams[0]}' holds {len(persons)}. Fix: re-extract i-LIDS-VID.tar.")
        half = order.size // 2
        train, query, gallery = two_camera_split(
            cams, [persons[i] for i in sorted(order[:half].tolist())],
            [persons[i] for i in sorted(order[half:].tolist())])
        super().__init__(train, query, gallery, None, verbose)
