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
from collections.abc import Sequence

from data.datasets.base import TwoCameraDataset
from utils.errors import UserError

__all__ = ["PRID2011"]

NUM_PERSONS = 200


class PRID2011(TwoCameraDataset):
    """PRID-2011 multi-shot, 100 training and 100 test persons (see the module docstring).
    Built as ``PRID2011(root, attributes=True, verbose=True)`` (see :class:`VideoReIDDataset`;
    ``root``: the folder holding ``prid_2011/``; no attributes).
    """

    name = "PRID-2011"
    standard_train_pids = NUM_PERSONS // 2
    files_fix = ("Get prid_2011.zip from https://www.tugraz.at/institute/icg/research/"
                 "team-bischof/lrs/downloads/prid11, extract it and set DATASETS.ROOT_DIR to the "
                 "folder that holds prid_2011/.")
    archive = "prid_2011.zip"
    sequences = ("prid_2011", "multi_shot")
    cameras = ("cam_a", "cam_b")

    def _persons(self, root: str, cams: Sequence[str]) -> tuple[list[str], list[str]]:
        """The first :data:`NUM_PERSONS` persons of both cameras, halved."""
        both = sorted(p for p in set(os.listdir(cams[0])) & set(os.listdir(cams[1]))
                      if os.path.isdir(os.path.join(cams[0], p)))[:NUM_PERSONS]
        if len(both) < 2:
            raise UserError(f"PRID-2011: fewer than 2 persons appear in both '{cams[0]}' and "
                            f"'{cams[1]}'. Fix: re-extract {self.archive}.")
        half = len(both) // 2
        return both[:half], both[half:]
