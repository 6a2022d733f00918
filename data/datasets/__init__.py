"""Video re-ID datasets: MARS and DukeMTMC-VideoReID (with attributes), iLIDS-VID, PRID-2011."""

from data.datasets.base import Tracklet, VideoReIDDataset
from data.datasets.duke import DukeVideo
from data.datasets.ilidsvid import ILIDSVID
from data.datasets.mars import Mars
from data.datasets.prid import PRID2011

# DATASETS.NAME -> dataset class
DATASET_CLASSES = {"mars": Mars, "duke": DukeVideo, "ilidsvid": ILIDSVID, "prid": PRID2011}

__all__ = ["DATASET_CLASSES", "DukeVideo", "ILIDSVID", "Mars", "PRID2011", "Tracklet",
           "VideoReIDDataset"]
