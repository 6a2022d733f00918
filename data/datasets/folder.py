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
from collections.abc import Mapping, Sequence

from data.attributes import (
    AttributeFixes,
    AttributeKey,
    AttributeSchema,
    load_attribute_table,
    read_attribute_schema,
)
from data.datasets.base import (
    IMAGE_EXTENSIONS,
    SPLIT_FOLDERS,
    Tracklet,
    VideoReIDDataset,
    check_required_paths,
    path_parts,
    relabel_pids,
    sorted_entries,
)
from utils.errors import UserError

__all__ = ["FolderDataset", "match_attribute_rows", "read_folder_schema", "row_key",
           "split_tracklets"]

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


def match_attribute_rows(tracklets: Sequence[Tracklet], table: Mapping[AttributeKey, tuple]
                         ) -> tuple[list[Tracklet], list[AttributeKey]]:
    """Which tracklets have no row, and which rows name no tracklet (junk pids excepted).

    Args:
        tracklets: every kept tracklet of the three splits.
        table: the rows of attributes.csv by :func:`row_key`.

    Returns:
        (the tracklets without a row; the keys of the rows, pid >= 0, that no tracklet has).
    """
    keys = {row_key(t) for t in tracklets}
    missing = [t for t in tracklets if row_key(t) not in table]
    unmatched = [k for k in table if k not in keys and k[0] >= 0]
    return missing, unmatched


def _rows_error(csv_path: str, missing: list[Tracklet], unmatched: list[AttributeKey]
                ) -> UserError:
    """The error that lists the tracklets without a row and the rows without a tracklet."""
    lines = [f"  - {os.path.dirname(t.img_paths[0])}: no row (pid {k[0]}, camid {k[1]}, "
             f"tracklet {k[2]})" for t, k in ((t, row_key(t)) for t in missing[:5])]
    lines += [f"  - row pid {k[0]}, camid {k[1]}, tracklet {k[2]}: no such tracklet folder"
              for k in unmatched[:5]]
    more = len(missing) + len(unmatched) - len(lines)
    return UserError(
        f"'{csv_path}' does not match the tracklets: {len(missing)} tracklet(s) have no row and "
        f"{len(unmatched)} row(s) name no tracklet:\n" + "\n".join(lines)
        + (f"\n  ... and {more} more" if more > 0 else "")
        + "\nFix: give every tracklet one row, keyed by its pid, its camid and its folder's "
        f"name (e.g. 1_0003 in train/0005/1_0003), or {_NO_ATTRIBUTES}.")


class FolderDataset(VideoReIDDataset):
    """A dataset of your own tracklets in the folder layout (see the module docstring).

    Class attributes beyond :class:`VideoReIDDataset`'s: ``schema_file`` (the
    ``attributes.yml`` that gives the attribute schema of each folder) and ``key_columns``
    (the key columns of its ``attributes.csv``).

    Args:
        root: the dataset folder.
        attributes: read attributes.yml and attributes.csv (False: no attribute files needed).
        verbose: log the statistics table.

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
                   "repeated lines"))

    @classmethod
    def frame_fix(cls, path: str) -> str:
        """Replace or delete the frame (the folders are the split)."""
        return ("replace the frame by a readable .jpg/.jpeg/.png image, or delete it (or its "
                "tracklet folder)")

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

    def __init__(self, root: str, attributes: bool = True, verbose: bool = True) -> None:
        root = os.path.normpath(os.path.expanduser(root))
        check_required_paths("folder dataset", [(os.path.join(root, s), "dir") for s in SPLITS],
                             _WHERE)
        schema = read_folder_schema(root) if attributes else None
        splits, junk = {}, 0
        for split in SPLITS:
            splits[split], dropped = split_tracklets(os.path.join(root, split))
            junk += dropped
        if schema is not None:
            csv_path = os.path.join(root, self.attribute_file)
            table = load_attribute_table(csv_path, schema, self.attribute_fixes)
            missing, unmatched = match_attribute_rows([t for s in SPLITS for t in splits[s]],
                                                      table)
            if missing or unmatched:
                raise _rows_error(csv_path, missing, unmatched)
            splits = {s: [t._replace(attributes=table[row_key(t)]) for t in ts]
                      for s, ts in splits.items()}
        labels = relabel_pids([t.pid for t in splits["train"]])
        train = [t._replace(pid=labels[t.pid]) for t in splits["train"]]
        if verbose and junk:
            logger.info("%s: dropped %d junk tracklet(s) (negative pid folders).", root, junk)
        super().__init__(train, splits["query"], splits["gallery"], schema, verbose)
