"""Video re-ID datasets: MARS and DukeMTMC-VideoReID (with attributes), iLIDS-VID, PRID-2011,
and your own tracklets in the folder layout (with optional attributes)."""

from data.datasets.base import Tracklet, VideoReIDDataset
from data.datasets.duke import DukeVideo
from data.datasets.folder import FolderDataset
from data.datasets.ilidsvid import ILIDSVID
from data.datasets.mars import Mars
from data.datasets.prid import PRID2011

# DATASETS.NAME -> dataset class
DATASET_CLASSES = {"mars": Mars, "duke": DukeVideo, "ilidsvid": ILIDSVID, "prid": PRID2011,
                   "folder": FolderDataset}

__all__ = ["DATASET_CLASSES", "DukeVideo", "FolderDataset", "ILIDSVID", "Mars", "PRID2011",
           "Tracklet", "VideoReIDDataset"]
