"""Common part of the video re-ID datasets: file checks, tracklets, attributes, statistics.

A tracklet is a :class:`Tracklet`, the tuple ``(img_paths, pid, camid, attributes, key)``
whose first four fields are the tracklet every consumer reads, ``(img_paths: tuple[str, ...],
pid: int, camid: int, attributes: tuple[int, ...])``. Each dataset class holds its facts as
class attributes (:class:`VideoReIDDataset`): attribute schema and file, published statistics,
training identities of the standard split, and the fixes that messages give for its files
(where its images and attribute annotations come from).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import ClassVar, NamedTuple

from data.attributes import AttributeFixes, AttributeSchema, load_attribute_table
from utils.errors import UserError

__all__ = [
    "IMAGE_EXTENSIONS",
    "SPLIT_FOLDERS",
    "AttributeLookup",
    "Tracklet",
    "TrackletKey",
    "VideoReIDDataset",
    "check_required_paths",
    "find_missing_files",
    "make_tracklets",
    "path_parts",
    "relabel_pids",
    "sorted_entries",
    "two_camera_split",
]

logger = logging.getLogger("reid.data")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
SPLIT_FOLDERS = ("train", "query", "gallery")      # the split folders of Duke and folder datasets

# (person id as in the files, 1-based camera, tracklet number): see Tracklet.key
TrackletKey = tuple[int, int, int]


class Tracklet(NamedTuple):
    """One tracklet of a parsed dataset.

    A tuple: ``img_paths, pid, camid, attributes = t[:4]`` and ``t[0]``..``t[3]`` are the
    tracklet every consumer reads; ``key`` comes fifth.

    Attributes:
        img_paths: the frame paths (MARS: in name-list order; otherwise sorted by name).
        pid: the person id: relabelled 0..N-1 (sorted) in the train subset, the original id in
            query and gallery (0: a distractor).
        camid: the 0-based camera (the folder dataset: the integer of its folder names).
        attributes: the attribute class indices in CSV order; -1 each when unknown (a gallery
            tracklet without a CSV row, such as the distractors); empty for a dataset without
            attributes.
        key: ``(person id, camera, tracklet number)`` as the files name the tracklet: the
            original person id (never relabelled), the 1-based camera (``camid + 1``) and the
            tracklet number: MARS the ``tttt`` of the image names ``PPPPCcTttttFfff.jpg``,
            DukeMTMC-VideoReID the tracklet folder's name, iLIDS-VID and PRID-2011 (one
            tracklet per person and camera) 1, the folder dataset the position of the
            ``<camid>_<tracklet>`` folder among its pid folder's (1-based). For MARS and Duke
            it is the key of the tracklet's row in the attribute CSV, ``(person_id,
            camera_id, tracklets_id)``; the folder dataset's CSV keys rows by folder name.
    """

    img_paths: tuple[str, ...]
    pid: int
    camid: int
    attributes: tuple[int, ...]
    key: TrackletKey


def check_required_paths(dataset: str, required: Sequence[tuple[str, str]],
                         where: str) -> None:
    """Raise one UserError listing every missing path.

    Args:
        dataset: dataset name for the message.
        required: ``(path, "dir" | "file")`` pairs.
        where: where to get the files (appended to the message).
    """
    missing = [p for p, kind in required
               if not (os.path.isdir(p) if kind == "dir" else os.path.isfile(p))]
    if missing:
        lines = "\n".join(f"  - {p}" for p in missing)
        raise UserError(f"{dataset}: {len(missing)} required path(s) are missing:\n{lines}\n"
                        f"Fix: {where}")


def find_missing_files(paths: Sequence[str]) -> list[str]:
    """The entries of ``paths`` that name no existing file or folder, in input order.

    Each folder is listed once (one ``scandir`` per folder instead of one ``stat`` per file);
    the set work is small next to the listings, even for MARS's 1.19 M paths.

    Args:
        paths: file paths, e.g. every frame of a dataset.

    Returns:
        The missing paths (an empty list when all exist).
    """
    sep = os.sep
    existing: set[str] = set()
    for folder in {p.rpartition(sep)[0] for p in paths}:
        prefix = folder + sep if folder else ""
        try:
            with os.scandir(folder or ".") as it:
                existing.update([prefix + e.name for e in it])
        except (FileNotFoundError, NotADirectoryError):
            continue
    return [p for p in paths if p not in existing]


def relabel_pids(pids: Sequence[int]) -> dict[int, int]:
    """Map the distinct pids, in sorted order, to 0..N-1 (the train labels)."""
    return {pid: label for label, pid in enumerate(sorted(set(pids)))}


def make_tracklets(subset: str, paths: Sequence[tuple[str, ...]], keys: Sequence[TrackletKey],
                   lookup: AttributeLookup | None = None) -> list[Tracklet]:
    """The tracklets of one subset from their frames and keys.

    The pid is the key's person id, relabelled by :func:`relabel_pids` in the train subset;
    the camid is the key's camera minus 1. With a ``lookup``, each tracklet's attributes are
    its CSV row (required in train and query; in the gallery a missing row is unknown).

    Args:
        subset: "train", "query" or "gallery".
        paths: the frame paths of each tracklet.
        keys: the :attr:`Tracklet.key` of each tracklet.
        lookup: the attribute rows (None: no attributes, an empty tuple each).

    Raises:
        UserError: a train or query tracklet without an attribute row.
    """
    if lookup is None:
        attrs = [()] * len(keys)
    else:
        attrs = lookup.rows(keys, [p[0] for p in paths], subset, required=subset != "gallery")
    pids = [k[0] for k in keys]
    if subset == "train":
        labels = relabel_pids(pids)
        pids = [labels[p] for p in pids]
    return [Tracklet(p, pid, k[1] - 1, a, k)
            for p, pid, a, k in zip(paths, pids, attrs, keys, strict=True)]


def sorted_entries(path: str, dirs: bool) -> list[os.DirEntry]:
    """The visible sub-folders (``dirs``) or image files of a folder, sorted by name."""
    with os.scandir(path) as it:
        entries = [e for e in it if not e.name.startswith(".")
                   and (e.is_dir() if dirs else
                        e.is_file() and e.name.lower().endswith(IMAGE_EXTENSIONS))]
    return sorted(entries, key=lambda e: e.name)


def _person_tracklet(folder: str) -> tuple[str, ...]:
    """Sorted image paths of a person folder (one tracklet)."""
    paths = tuple(e.path for e in sorted_entries(folder, dirs=False))
    if not paths:
        raise UserError(f"Tracklet folder '{folder}' holds no image. Fix: re-extract the "
                        "dataset.")
    return paths


def _person_number(folder: str) -> int:
    digits = "".join(ch for ch in os.path.basename(folder) if ch.isdigit())
    if not digits:
        raise UserError(f"Person folder '{folder}' has no number in its name. Fix: remove it.")
    return int(digits)


def path_parts(path: str) -> list[str]:
    """The components of a normalised path (for the layouts' :meth:`holds_frame`)."""
    return os.path.normpath(path).split(os.sep)


def two_camera_split(cams: Sequence[str], train_persons: Sequence[str],
                     test_persons: Sequence[str]) -> tuple[list[Tracklet], ...]:
    """Train / query / gallery of a two-camera dataset of ``<cam>/<person>/`` image folders.

    Train = both cameras of ``train_persons`` (pids relabelled in sorted order); query =
    camera 0 and gallery = camera 1 of ``test_persons``. A pid is the number in the person
    folder's name.

    Args:
        cams: the two camera folders.
        train_persons: person folder names for training.
        test_persons: person folder names for test.

    Raises:
        UserError: a person folder missing in a camera, without images or without a number.
    """
    for p in (*train_persons, *test_persons):
        for cam in cams:
            if not os.path.isdir(os.path.join(cam, p)):
                raise UserError(f"'{os.path.join(cam, p)}' is missing (every person of the "
                                "split needs both cameras). Fix: re-extract the dataset.")
    return (_two_camera_tracklets("train", cams, train_persons, (0, 1)),
            _two_camera_tracklets("query", cams, test_persons, (0,)),
            _two_camera_tracklets("gallery", cams, test_persons, (1,)))


def _two_camera_tracklets(subset: str, cams: Sequence[str], persons: Sequence[str],
                          cameras: Sequence[int]) -> list[Tracklet]:
    """One tracklet per person and camera (index into ``cams``), tracklet number 1."""
    pairs = [(p, c) for p in persons for c in cameras]
    return make_tracklets(subset, [_person_tracklet(os.path.join(cams[c], p)) for p, c in pairs],
                          [(_person_number(p), c + 1, 1) for p, c in pairs])


class VideoReIDDataset:
    """Parsed video re-ID dataset: three lists of tracklets and the attribute schema.

    Class attributes (the dataset's facts; read them from the class, e.g.
    ``DATASET_CLASSES["mars"].attribute_schema``):
        name: the name printed in logs.
        attribute_schema: the :class:`AttributeSchema` of the attribute CSV, or None for a
            dataset without attributes.
        attribute_file: the attribute CSV's name inside the dataset folder, or None.
        published_statistics: ``{subset: (ids, tracklets, frames)}`` of the standard split as
            published (None where a number is not published in these terms), or None.
        standard_train_pids: training identities of the standard split (the classifier's
            width), or None.
        attribute_fixes: the :class:`data.attributes.AttributeFixes` of the attribute CSV's
            problems (MARS, Duke: re-download it; the folder dataset: edit it).
        readme_section: the README section that describes the dataset's layout.
        Methods :meth:`frame_fix` (what to do about a missing or unreadable frame) and
        :meth:`holds_frame` (whether a path lies in the dataset's layout).

    Attributes:
        train: training tracklets, pids relabelled 0..num_train_pids-1.
        query: query tracklets (original pids).
        gallery: gallery tracklets (original pids; distractors have pid 0).
        num_train_pids: number of training identities of this parsed split.
        attr_lens: class counts per attribute group, or None without attributes.
        attr_names: attribute names in CSV order (empty without attributes).
        attr_groups: attribute names per group (empty without attributes).
    """

    name = "video"
    attribute_schema: ClassVar[AttributeSchema | None] = None
    attribute_file: ClassVar[str | None] = None
    published_statistics: ClassVar[dict[str, tuple[int, int, int | None]] | None] = None
    standard_train_pids: ClassVar[int | None] = None
    attribute_fixes: ClassVar[AttributeFixes] = AttributeFixes()
    readme_section: ClassVar[str] = "Data preparation"

    @classmethod
    def frame_fix(cls, path: str) -> str:
        """What to do about the missing or unreadable frame ``path`` (a message's "Fix:")."""
        return ("restore the file (re-extract it from the dataset's archive), or replace it by "
                "a readable image")

    @classmethod
    def holds_frame(cls, path: str) -> bool:
        """Whether ``path`` is a frame path of this dataset's layout (the layouts of the
        dataset classes exclude one another: at most one class holds a path)."""
        return False

    @classmethod
    def schema_for(cls, root: str) -> AttributeSchema | None:
        """The attribute schema of this dataset at ``root`` (DATASETS.ROOT_DIR), without
        parsing it: the class's :attr:`attribute_schema` (None without attributes)."""
        return cls.attribute_schema

    def __init__(self, train: list[Tracklet], query: list[Tracklet], gallery: list[Tracklet],
                 schema: AttributeSchema | None = None, verbose: bool = True) -> None:
        self.train, self.query, self.gallery = train, query, gallery
        self.num_train_pids = len({t.pid for t in train})
        self.attr_lens = schema.attr_lens if schema is not None else None
        self.attr_names = schema.names if schema is not None else []
        self.attr_groups = [list(g) for g in schema.groups] if schema is not None else []
        if verbose:
            self.log_statistics()

    def statistics(self) -> dict[str, tuple[int, int, int]]:
        """``{subset: (ids, tracklets, frames)}`` for train, query and gallery."""
        return {name: (len({t.pid for t in subset}), len(subset),
                       sum(len(t.img_paths) for t in subset))
                for name, subset in (("train", self.train), ("query", self.query),
                                     ("gallery", self.gallery))}

    def log_statistics(self) -> None:
        """Log a table of ids / tracklets / frames per subset (logger "reid.data")."""
        rows = self.statistics()
        lines = [f"{self.name} statistics:",
                 "  subset   |   # ids | # tracklets |  # frames",
                 "  ---------+---------+-------------+----------"]
        lines += [f"  {k:<8} | {i:7d} | {t:11d} | {f:9d}" for k, (i, t, f) in rows.items()]
        if self.attr_lens is not None:
            lens = [sum(g) for g in self.attr_lens]
            lines.append(f"  attributes: {len(self.attr_names)} in {len(lens)} groups "
                         f"(one-hot widths {lens})")
        logger.info("\n".join(lines))


class AttributeLookup:
    """Find each tracklet's attribute row by (pid, 1-based camera, tracklet number).

    Args:
        csv_path: the attribute CSV.
        schema: the dataset's attribute schema.
        fixes: the fixes of the CSV's problems (the dataset class's ``attribute_fixes``).
    """

    def __init__(self, csv_path: str, schema: AttributeSchema,
                 fixes: AttributeFixes | None = None) -> None:
        self.csv_path = csv_path
        self.table = load_attribute_table(csv_path, schema, fixes)
        self.unknown = (-1,) * len(schema.names)

    def rows(self, keys: Sequence[tuple[int, int, int]], first_paths: Sequence[str],
             subset: str, required: bool = True) -> list[tuple[int, ...]]:
        """The attribute tuple of every key; all -1 for distractors (pid 0) and absent rows.

        Args:
            keys: ``(pid, camera [1-based], tracklet number)`` per tracklet.
            first_paths: the first image of each tracklet (named in errors).
            subset: "train", "query" or "gallery" (named in messages).
            required: a missing row (pid != 0) is an error; else a logged warning.

        Raises:
            UserError: a required row is missing; names the tracklet(s).
        """
        get = self.table.get
        found = [get(k) if k[0] != 0 else self.unknown for k in keys]
        missing = [i for i, row in enumerate(found) if row is None]
        if missing and required:
            shown = "\n".join(f"  - pid {keys[i][0]}, camera {keys[i][1]}, tracklet "
                              f"{keys[i][2]} (first image {first_paths[i]})"
                              for i in missing[:5])
            more = f"\n  ... and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise UserError(f"{len(missing)} {subset} tracklet(s) have no row in the attribute "
                            f"file '{self.csv_path}' (looked up by person_id, camera_id, "
                            f"tracklets_id):\n{shown}{more}\nFix: use the attribute file that "
                            "belongs to this split, or set ATTR_RECOG_ON False to train "
                            "without attributes.")
        if missing:
            logger.warning("%d %s tracklet(s) (not distractors) have no row in '%s'; their "
                           "attributes count as unknown (-1).", len(missing), subset,
                           self.csv_path)
        return [row if row is not None else self.unknown for row in found]
