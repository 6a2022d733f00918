"""Your own tracklets: the folder dataset (DATASETS.NAME folder), with optional attributes.

Layout under DATASETS.ROOT_DIR::

    train/<pid>/<camid>_<tracklet>/<frame files>    # pid, camid: integers; frames .jpg, .jpeg,
    query/<pid>/<camid>_<tracklet>/...              # .png (or .bmp), ordered by file name
    gallery/<pid>/<camid>_<tracklet>/...
    attributes.yml     # optional: the two attribute groups, name -> number of classes
    attributes.csv     # with attributes.yml: pid, camid, tracklet (the folder name, e.g.
                       # 1_0003), then one column per attribute, named as in attributes.yml

``attributes.yml`` holds exactly two keys, ``id_irrelevant`` and ``id_relevant`` (the two
attribute streams), each a mapping attribute name -> class count in CSV column order (see
:func:`data.attributes.read_attribute_schema`); the CSV holds class indices, one row per
tracklet. Train pids are relabelled 0..N-1 in sorted order; a negative pid folder is junk and
dropped (in every split); gallery identities that no query has are distractors. The camid is
the folder's integer as written (evaluation only compares cameras). Hidden entries, plain files
beside the pid and tracklet folders, and files of other types in a tracklet folder are ignored.

Example::

    ds = FolderDataset("data/my_tracklets")          # with attributes.yml + attributes.csv
    ds.train[0].img_paths, ds.attr_lens              # frames of the first tracklet, [[..], [..]]
"""

from __future__ import annotations

import logging
import os

from data.attributes import (
    AttributeFixes,
    AttributeKey,
    AttributeSchema,
    read_attribute_schema,
)
from data.datasets.base import (
    IMAGE_EXTENSIONS,
    SPLIT_FOLDERS,
    AttributeRules,
    ParsedSplit,
    Tracklet,
    VideoReIDDataset,
    check_required_paths,
    make_tracklets,
    path_parts,
    sorted_entries,
)
from utils.errors import UserError

__all__ = ["FolderDataset", "read_folder_schema", "row_key", "split_tracklets"]

logger = logging.getLogger("reid.data")

SPLITS = SPLIT_FOLDERS
_LAYOUT = ("<split>/<pid>/<camid>_<tracklet>/<frames> with integer pid and camid, e.g. "
           "train/0007/2_0001/0001.jpg (README, Your own data)")
_WHERE = f"arrange the tracklets as {_LAYOUT}, and set DATASETS.ROOT_DIR to the folder."
_NO_ATTRIBUTES = ("set ATTR_RECOG_ON False MODEL.FUSION_METHOD TA to train without attributes")


def _integer(text: str, signed: bool) -> int | None:
    """``text`` as an integer (a leading "-" only when ``signed``), else None."""
    digits = text[1:] if signed and text.startswith("-") else text
    return int(text) if digits.isdigit() and digits.isascii() else None


def _camid_of(name: str) -> int | None:
    """The camid of a ``<camid>_<tracklet>`` folder name, or None when it is not one."""
    camid, sep, rest = name.partition("_")
    value = _integer(camid, signed=False)
    return value if sep and rest else None


def _tracklet_camid(entry: os.DirEntry) -> int:
    """The camid of a ``<camid>_<tracklet>`` folder."""
    value = _camid_of(entry.name)
    if value is None:
        raise UserError(f"Tracklet folder '{entry.path}': the name must be <camid>_<tracklet> "
                        f"with an integer camid, e.g. 1_0003. Fix: rename the folder; the layout "
                        f"is {_LAYOUT}.")
    return value


def split_tracklets(split_dir: str) -> tuple[list[Tracklet], int]:
    """The tracklets of one split folder ``<pid>/<camid>_<tracklet>/<frames>``, pids as written.

    Args:
        split_dir: the split folder (e.g. ``root/query``, or any folder in this layout).

    Returns:
        (tracklets in (pid, folder name) order, without attributes; the number of junk
        tracklets dropped: those of negative pid folders). A tracklet's key is ``(pid,
        camid + 1, its 1-based number in the pid folder)``.

    Raises:
        UserError: a pid folder name that is not an integer, a tracklet folder name that is not
            ``<camid>_<tracklet>``, a tracklet without frames, or no tracklet at all.
    """
    pid_dirs = []
    for entry in sorted_entries(split_dir, dirs=True):
        pid = _integer(entry.name, signed=True)
        if pid is None:
            raise UserError(f"Pid folder '{entry.path}': the name must be an integer person id "
                            "(a negative one marks junk). Fix: rename or remove the folder; the "
                            f"layout is {_LAYOUT}.")
        pid_dirs.append((pid, entry))
    tracklets, junk = [], 0
    for pid, pid_entry in sorted(pid_dirs, key=lambda p: (p[0], p[1].name)):
        for number, entry in enumerate(sorted_entries(pid_entry.path, dirs=True), start=1):
            camid = _tracklet_camid(entry)
            frames = tuple(e.path for e in sorted_entries(entry.path, dirs=False))
            if not frames:
                raise UserError(f"Tracklet folder '{entry.path}' holds no frame (files ending "
                                f"{', '.join(IMAGE_EXTENSIONS)}). Fix: add its frames or remove "
                                "the folder.")
            if pid < 0:
                junk += 1
                continue
            tracklets.append(Tracklet(frames, pid, camid, (), (pid, camid + 1, number)))
    if not tracklets:
        raise UserError(f"'{split_dir}' holds no tracklet (a non-negative <pid>/<camid>_"
                        f"<tracklet>/ folder of frames). Fix: {_WHERE}")
    return tracklets, junk


def row_key(tracklet: Tracklet) -> AttributeKey:
    """The ``(pid, camid, tracklet folder name)`` of a tracklet's row in attributes.csv."""
    folder = os.path.basename(os.path.dirname(tracklet.img_paths[0]))
    return tracklet.key[0], tracklet.camid, folder


def read_folder_schema(root: str) -> AttributeSchema:
    """The attribute schema of a folder dataset: its ``attributes.yml``.

    Raises:
        UserError: ``attributes.yml`` or ``attributes.csv`` is missing (the message names both
            files and the keys that train without attributes), or the yml is malformed.
    """
    yml = os.path.join(root, FolderDataset.schema_file)
    csv = os.path.join(root, FolderDataset.attribute_file)
    missing = [p for p in (yml, csv) if not os.path.isfile(p)]
    if missing:
        raise UserError(
            f"ATTR_RECOG_ON True trains the attribute streams, but the folder dataset lacks "
            f"{' and '.join(repr(p) for p in missing)}. Fix: add {FolderDataset.schema_file} "
            "(id_irrelevant and id_relevant: attribute name -> number of classes) and "
            f"{FolderDataset.attribute_file} (pid, camid, tracklet, one column per attribute; "
            f"README, Your own data), or {_NO_ATTRIBUTES}.")
    return read_attribute_schema(yml, FolderDataset.key_columns, ("tracklet",))


class FolderDataset(VideoReIDDataset):
    """A dataset of your own tracklets in the folder layout (see the module docstring).

    Built as ``FolderDataset(root, attributes=True, verbose=True)`` (see
    :class:`VideoReIDDataset`; ``attributes``: read attributes.yml and attributes.csv, False:
    no attribute files needed). Its attribute rows follow the rules of own annotations
    (:class:`data.datasets.base.AttributeRules`): one row per tracklet, keyed by
    :func:`row_key`, and no row without a tracklet.

    Class attributes beyond :class:`VideoReIDDataset`'s: ``schema_file`` (the
    ``attributes.yml`` that gives the attribute schema of each folder) and ``key_columns``
    (the key columns of its ``attributes.csv``). Attribute beyond its: ``junk_dropped``, the
    number of junk tracklets (negative pid folders) left out.

    Raises:
        UserError: a missing split folder (all listed), a bad folder name, an empty tracklet,
            missing or malformed attribute files, a tracklet without a row or a row without a
            tracklet; each names the file and the fix.
    """

    name = "folder"
    attribute_file = "attributes.csv"
    schema_file = "attributes.yml"
    key_columns = ("pid", "camid", "tracklet")
    readme_section = "Your own data"
    files_fix = _WHERE
    attribute_rules = AttributeRules(row_key=row_key, exact=True)
    attribute_fixes = AttributeFixes(
        file=("write attributes.csv as a header line pid,camid,tracklet followed by the "
              "attribute names of attributes.yml in its order, then one line per tracklet "
              "(README, Your own data)"),
        cell=("write the tracklet's pid, camid and folder name in the key cells and a class "
              "index (an integer) in every attribute cell of attributes.csv (README, Your own "
              "data)"),
        range=("write class indices from 0 to the class count of the attribute in "
               "attributes.yml minus 1, or correct that count in attributes.yml"),
        duplicate=("keep one line per tracklet in attributes.csv: delete or correct the "
                   "repeated lines"),
        rows=("give every tracklet one row of attributes.csv, keyed by its pid, its camid and "
              "its folder's name (e.g. 1_0003 in train/0005/1_0003), or "
              f"{_NO_ATTRIBUTES} (README, Your own data)"),
        missing=(f"add attributes.yml and attributes.csv (README, Your own data), or "
                 f"{_NO_ATTRIBUTES}"))

    @classmethod
    def frame_fix(cls, path: str) -> str:
        """Replace or delete the frame (the folders are the split)."""
        return ("replace the frame by a readable .jpg/.jpeg/.png image, or delete it (or its "
                "tracklet folder)")

    @classmethod
    def frames_fix(cls) -> str:
        """Restore the frames or delete them (the folders are the split)."""
        return "restore them, or delete them (or their tracklet folders)"

    @classmethod
    def holds_frame(cls, path: str) -> bool:
        """``.../<train|query|gallery>/<pid>/<camid>_<tracklet>/<frame>``, integer pid and
        camid."""
        parts = path_parts(path)
        return (len(parts) >= 4 and parts[-4] in SPLITS
                and _integer(parts[-3], signed=True) is not None
                and _camid_of(parts[-2]) is not None)

    @classmethod
    def schema_for(cls, root: str) -> AttributeSchema | None:
        """The schema of ``root/attributes.yml``, or None when the folder has none."""
        if not os.path.isfile(os.path.join(root, cls.schema_file)):
            return None
        return read_folder_schema(root)

    @classmethod
    def required_schema(cls, root: str) -> AttributeSchema:
        """The schema of ``root/attributes.yml`` (see :func:`read_folder_schema`)."""
        return read_folder_schema(root)

    def _parse(self, root: str, attributes: bool) -> ParsedSplit:
        check_required_paths("folder dataset", [(os.path.join(root, s), "dir") for s in SPLITS],
                             self.files_fix)
        schema = self.required_schema(root) if attributes else None
        splits, self.junk_dropped = {}, 0
        for split in SPLITS:
            tracklets, dropped = split_tracklets(os.path.join(root, split))
            splits[split] = ([t.img_paths for t in tracklets], [t.key for t in tracklets])
            self.junk_dropped += dropped
        matcher = (self.attribute_matcher(os.path.join(root, self.attribute_file), schema)
                   if schema is not None else None)
        return (*make_tracklets(splits, matcher), schema)

    def log_statistics(self) -> None:
        """The junk tracklets dropped, then the statistics table."""
        if self.junk_dropped:
            logger.info("%s: dropped %d junk tracklet(s) (negative pid folders).", self.root,
                        self.junk_dropped)
        super().log_statistics()
