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
           "Tracklet", "VideoReIDDataset", "dataset_class_of_frame", "frame_fix"]


def dataset_class_of_frame(path: str) -> type[VideoReIDDataset] | None:
    """The dataset class whose layout holds the frame ``path`` (its ``holds_frame``; the
    layouts exclude one another), or None for a path of no known layout."""
    return next((cls for cls in DATASET_CLASSES.values() if cls.holds_frame(path)), None)


def frame_fix(path: str) -> str:
    """What to do about the missing or unreadable frame ``path``: the ``frame_fix`` of the
    dataset class whose layout holds it (MARS, Duke, ...: restore it from their archive; the
    folder dataset: replace or delete it), else a fix that holds for any dataset.

    Training reads frames by path alone (:func:`data.transforms.read_image`); the layout names
    the dataset.
    """
    return (dataset_class_of_frame(path) or VideoReIDDataset).frame_fix(path)
