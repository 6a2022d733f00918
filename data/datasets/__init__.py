"""Video re-ID datasets: MARS and DukeMTMC-VideoReID (with attributes), iLIDS-VID, PRID-2011,
and your own tracklets in the folder layout (with optional attributes).

The datasets are the entries of :data:`DATASETS` (DATASETS.NAME -> a
:class:`~data.datasets.base.VideoReIDDataset` subclass); a new dataset is a subclass plus one
line, ``DATASETS.register("name", Class)`` or the decorator ``@DATASETS.register("name")``
(README, "How to add a backbone, dataset or sampler").
"""

from data.datasets.base import Tracklet, VideoReIDDataset
from data.datasets.duke import DukeVideo
from data.datasets.folder import FolderDataset
from data.datasets.ilidsvid import ILIDSVID
from data.datasets.mars import Mars
from data.datasets.prid import PRID2011
from utils.registry import Registry

DATASETS: Registry[type[VideoReIDDataset]] = Registry("DATASETS.NAME", "dataset")
DATASETS.register("mars", Mars)
DATASETS.register("duke", DukeVideo)
DATASETS.register("ilidsvid", ILIDSVID)
DATASETS.register("prid", PRID2011)
DATASETS.register("folder", FolderDataset)

__all__ = ["DATASETS", "DukeVideo", "FolderDataset", "ILIDSVID", "Mars",
           "PRID2011", "Tracklet", "VideoReIDDataset", "dataset_class_of_frame",
           "datasets_with_attributes", "frame_fix"]


def datasets_with_attributes() -> tuple[str, ...]:
    """The DATASETS.NAMEs whose datasets have attributes: their class has an
    ``attribute_file`` (MARS, Duke; the folder dataset reads its attribute files when
    ATTR_RECOG_ON is True)."""
    return tuple(name for name, cls in DATASETS.items() if cls.attribute_file is not None)


def dataset_class_of_frame(path: str) -> type[VideoReIDDataset] | None:
    """The dataset class whose layout holds the frame ``path`` (its ``holds_frame``; the
    layouts exclude one another), or None for a path of no known layout."""
    return next((cls for cls in DATASETS.values() if cls.holds_frame(path)), None)


def frame_fix(path: str) -> str:
    """What to do about the missing or unreadable frame ``path``: the ``frame_fix`` of the
    dataset class whose layout holds it (MARS, Duke, ...: restore it from their archive; the
    folder dataset: replace or delete it), else a fix that holds for any dataset.

    Training reads frames by path alone (:func:`data.transforms.read_image`); the layout names
    the dataset.
    """
    return (dataset_class_of_frame(path) or VideoReIDDataset).frame_fix(path)
