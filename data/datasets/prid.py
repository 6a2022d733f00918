"""PRID-2011 (Hirzer et al., SCIA 2011), multi-shot, without attributes.

Reference: M. Hirzer et al., "Person Re-Identification by Descriptive and Discriminative
Classification", SCIA 2011.

Layout (the official archive)::

    root/prid_2011/multi_shot/cam_a/person_NNNN/*.png
    root/prid_2011/multi_shot/cam_b/person_NNNN/*.png

The protocol kept simple: the first 200 persons (sorted folder names) that appear in both
cameras, the first half for training (both cameras, pids relabelled), the second half for
test with query = cam_a and gallery = cam_b (pid = the folder's number).
"""

from __future__ import annotations

import os

from data.datasets.base import (
    VideoReIDDataset,
    check_required_paths,
    path_parts,
    two_camera_split,
)
from utils.errors import UserError

__all__ = ["PRID2011"]

_WHERE = ("Get prid_2011.zip from https://www.tugraz.at/institute/icg/research/team-bischof/"
          "lrs/downloads/prid11, extract it and set DATASETS.ROOT_DIR to the folder that holds "
          "prid_2011/.")
NUM_PERSONS = 200


class PRID2011(VideoReIDDataset):
    """PRID-2011 multi-shot, 100 training and 100 test persons (see the module docstring).

    Args:
        root: folder holding ``prid_2011/``.
        verbose: log the statistics table.
    """

    name = "PRID-2011"
    standard_train_pids = NUM_PERSONS // 2

    @classmethod
    def frame_fix(cls, path: str) -> str:
        """Restore the frame from prid_2011.zip."""
        return "restore the file(s) from prid_2011.zip (re-extract it)"

    @classmethod
    def holds_frame(cls, path: str) -> bool:
        """``.../prid_2011/multi_shot/<camera>/<person>/<frame>``."""
        parts = path_parts(path)
        return len(parts) >= 5 and (parts[-5], parts[-4]) == ("prid_2011", "multi_shot")

    def __init__(self, root: str, verbose: bool = True) -> None:
        root = os.path.normpath(os.path.expanduser(root))
        cams = [os.path.join(root, "prid_2011", "multi_shot", c) for c in ("cam_a", "cam_b")]
        check_required_paths("PRID-2011", [(c, "dir") for c in cams], _WHERE)
        both = sorted(p for p in set(os.listdir(cams[0])) & set(os.listdir(cams[1]))
                      if os.path.isdir(os.path.join(cams[0], p)))[:NUM_PERSONS]
        if len(both) < 2:
            raise UserError(f"PRID-2011: fewer than 2 persons appear in both '{cams[0]}' and "
                            f"'{cams[1]}'. Fix: re-extract prid_2011.zip.")
        half = len(both) // 2
        train, query, gallery = two_camera_split(cams, both[:half], both[half:])
        super().__init__(train, query, gallery, None, verbose)
