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
from collections.abc import Sequence

import numpy as np
import scipy.io as sio

from data.datasets.base import TwoCameraDataset
from utils.errors import UserError

__all__ = ["ILIDSVID"]


class ILIDSVID(TwoCameraDataset):
    """iLIDS-VID, split 0 of the official splits (see the module docstring). Built as
    ``ILIDSVID(root, attributes=True, verbose=True)`` (see :class:`VideoReIDDataset`; ``root``:
    the folder holding ``i-LIDS-VID/`` and ``train-test people splits/``; no attributes).
    """

    name = "iLIDS-VID"
    standard_train_pids = 150              # half of the 300 persons of the official splits
    files_fix = ("Get i-LIDS-VID.tar (it holds i-LIDS-VID/ and 'train-test people splits/') "
                 "from https://xiatian-zhu.github.io/downloads_qmul_iLIDS-VID_ReID_dataset.html, "
                 "extract it and set DATASETS.ROOT_DIR to the folder that holds both.")
    archive = "i-LIDS-VID.tar"
    sequences = ("i-LIDS-VID", "sequences")
    cameras = ("cam1", "cam2")
    required_files = (("train-test people splits", "train_test_splits_ilidsvid.mat"),)

    def _persons(self, root: str, cams: Sequence[str]) -> tuple[list[str], list[str]]:
        """Split 0 of ``ls_set``: its first half trains, its second half tests."""
        split_path = os.path.join(root, *self.required_files[0])
        persons = sorted(d for d in os.listdir(cams[0]) if os.path.isdir(os.path.join(cams[0], d)))
        try:
            splits = np.atleast_2d(sio.loadmat(split_path)["ls_set"]).astype(np.int64)
        except (OSError, ValueError, KeyError) as e:
            raise UserError(f"Cannot read 'ls_set' from '{split_path}': {e}. Fix: re-extract "
                            f"{self.archive}.") from None
        order = splits[0] - 1                                   # split 0, 0-based person indices
        if order.size < 2 or order.min() < 0 or order.max() >= len(persons):
            raise UserError(f"'{split_path}' (ls_set) indexes persons 1..{order.max() + 1} but "
                            f"'{cams[0]}' holds {len(persons)}. Fix: re-extract {self.archive}.")
        half = order.size // 2
        return ([persons[i] for i in sorted(order[:half].tolist())],
                [persons[i] for i in sorted(order[half:].tolist())])
