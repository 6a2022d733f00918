"""Common part of the video re-ID datasets: file checks, tracklets, attributes, statistics.

A tracklet is a :class:`Tracklet`, the tuple ``(img_paths, pid, camid, attributes, key)``
whose first four fields are the tracklet every consumer reads, ``(img_paths: tuple[str, ...],
pid: int, camid: int, attributes: tuple[int, ...])``. Each dataset class holds its facts as
class attributes (:class:`VideoReIDDataset`): attribute schema and file, published statistics,
training identities of the standard split, and the fixes that messages give for its files
(where its images and attribute annotations come from). Every class is built as
``cls(root, attributes=True, verbose=True)``.

Attribute rows are matched in one place, :class:`AttributeMatcher`, by the class's
:class:`AttributeRules` (the row key of a tracklet; released or own annotations): the parsers
call it through :func:`make_tracklets`, ``python -m tools.verify`` through
:meth:`AttributeMatcher.match`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, NamedTuple

from data.attributes import AttributeFixes, AttributeKey, AttributeSchema, load_attribute_table
from utils.errors import UserError

__all__ = [
    "DISTRACTOR_PID",
    "IMAGE_EXTENSIONS",
    "SPLIT_FOLDERS",
    "ParsedSplit",
    "AttributeMatch",
    "AttributeMatcher",
    "AttributeRules",
    "Tracklet",
    "TrackletKey",
    "TwoCameraDataset",
    "VideoReIDDataset",
    "check_required_paths",
    "find_missing_files",
    "make_tracklets",
    "path_parts",
    "relabel_pids",
    "sorted_entries",
    "tracklet_key",
]

logger = logging.getLogger("reid.data")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
SPLIT_FOLDERS = ("train", "query", "gallery")      # the subsets; the split folders of Duke and
                                                   # folder datasets
DISTRACTOR_PID = 0          # released annotations: gallery tracklets of no query identity
OPTIONAL_SUBSET = "gallery"  # released annotations: the subset whose rows may be missing

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


# What a dataset class's _parse returns: train, query and gallery tracklets, and the attribute
# schema (None: no attributes).
ParsedSplit = tuple[list[Tracklet], list[Tracklet], list[Tracklet], AttributeSchema | None]


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


def tracklet_key(tracklet: Tracklet) -> TrackletKey:
    """The row key of MARS and Duke: the tracklet's :attr:`Tracklet.key`, ``(person_id,
    camera_id, tracklets_id)`` of their attribute CSVs."""
    return tracklet.key


@dataclass(frozen=True)
class AttributeRules:
    """Which attribute rows a dataset's tracklets need (each class's ``attribute_rules``).

    Released annotations (``exact`` False: MARS, Duke): every train and query tracklet needs
    its row; a gallery tracklet without one and every distractor (pid 0, row or not) have
    unknown attributes (-1 each); rows that name no tracklet are only counted. Own annotations
    (``exact`` True: the folder dataset): every tracklet needs its row (pid 0 is a person like
    any other) and every row of a pid >= 0 must name a tracklet. Rows of negative pids belong
    to junk tracklets, which no dataset keeps: they never count as unmatched.

    Attributes:
        row_key: the key of a tracklet's row in the CSV: :func:`tracklet_key` (MARS, Duke), or
            the folder dataset's ``(pid, camid, tracklet folder name)``.
        exact: the rules of own annotations (and their messages, which name tracklet
            folders); False: those of released annotations.
    """

    row_key: Callable[[Tracklet], AttributeKey] = tracklet_key
    exact: bool = False


@dataclass
class AttributeMatch:
    """What :meth:`AttributeMatcher.match` found, per subset (train, query, gallery).

    Attributes:
        csv_path: the attribute CSV.
        rules: the rules it was matched by.
        fix: what to do about the problems (the class's ``attribute_fixes.rows``).
        attributes: the attributes of each tracklet, in tracklet order (unknown: -1 each).
        missing: the tracklets without the row they need.
        unknown: the tracklets (not distractors) without a row that need none.
        distractors: the number of distractor tracklets (released annotations).
        unmatched: the keys of the rows (pid >= 0) that name no tracklet.
    """

    csv_path: str
    rules: AttributeRules
    fix: str
    attributes: dict[str, list[tuple[int, ...]]] = field(default_factory=dict)
    missing: dict[str, list[Tracklet]] = field(default_factory=dict)
    unknown: dict[str, list[Tracklet]] = field(default_factory=dict)
    distractors: dict[str, int] = field(default_factory=dict)
    unmatched: list[AttributeKey] = field(default_factory=list)

    def error(self) -> UserError | None:
        """The error that stops parsing (None: no problem). Released annotations: the missing
        rows of the first subset that lacks some; own annotations: every missing row and
        every unmatched row."""
        key = self.rules.row_key
        if self.rules.exact:
            missing = [t for ts in self.missing.values() for t in ts]
            if not missing and not self.unmatched:
                return None
            lines = [f"  - {os.path.dirname(t.img_paths[0])}: no row (pid {k[0]}, camid {k[1]}, "
                     f"tracklet {k[2]})" for t, k in ((t, key(t)) for t in missing[:5])]
            lines += [f"  - row pid {k[0]}, camid {k[1]}, tracklet {k[2]}: no such tracklet "
                      "folder" for k in self.unmatched[:5]]
            more = len(missing) + len(self.unmatched) - len(lines)
            return UserError(
                f"'{self.csv_path}' does not match the tracklets: {len(missing)} tracklet(s) "
                f"have no row and {len(self.unmatched)} row(s) name no tracklet:\n"
                + "\n".join(lines) + (f"\n  ... and {more} more" if more > 0 else "")
                + f"\nFix: {self.fix}.")
        subset, missing = next(((s, ts) for s, ts in self.missing.items() if ts), ("", []))
        if not missing:
            return None
        shown = "\n".join(f"  - pid {k[0]}, camera {k[1]}, tracklet {k[2]} (first image "
                          f"{t.img_paths[0]})" for t, k in ((t, key(t)) for t in missing[:5]))
        more = f"\n  ... and {len(missing) - 5} more" if len(missing) > 5 else ""
        return UserError(f"{len(missing)} {subset} tracklet(s) have no row in the attribute "
                         f"file '{self.csv_path}' (looked up by person_id, camera_id, "
                         f"tracklets_id):\n{shown}{more}\nFix: {self.fix}.")

    def problems(self) -> list[tuple[str, str]]:
        """``(what, path)`` of every tracklet without the row it needs and, with own
        annotations, of every row that names no tracklet (``python -m tools.verify``)."""
        key, out = self.rules.row_key, []
        for subset, tracklets in self.missing.items():
            for t in tracklets:
                k, first = key(t), t.img_paths[0]
                if self.rules.exact:
                    out.append((f"tracklet {os.path.dirname(first)} has no row (pid {k[0]}, "
                                f"camid {k[1]}, tracklet {k[2]}) in '{self.csv_path}'", ""))
                else:
                    out.append((f"{subset} tracklet pid {k[0]}, camera {k[1]}, tracklet {k[2]} "
                                f"(first image {first}) has no row in '{self.csv_path}'",
                                os.path.dirname(first)))
        if self.rules.exact:
            out += [(f"'{self.csv_path}' has a row for pid {k[0]}, camid {k[1]}, tracklet "
                     f"{k[2]}, but no such tracklet folder exists", self.csv_path)
                    for k in self.unmatched]
        return out

    def notes(self) -> list[str]:
        """The coverage of the split and what needs no row (``python -m tools.verify``)."""
        counts = {s: (len(a) - self.distractors[s], len(self.missing[s]) + len(self.unknown[s]))
                  for s, a in self.attributes.items()}
        if self.rules.exact:
            n, absent = (sum(c[i] for c in counts.values()) for i in (0, 1))
            return [f"tracklets with an attribute row: {n - absent}/{n}."]
        notes = ["tracklets with an attribute row: "
                 + ", ".join(f"{s} {n - absent}/{n}" for s, (n, absent) in counts.items()) + "."]
        for subset, distractors in self.distractors.items():
            if distractors:
                notes.append(f"{distractors} {subset} distractor tracklet(s) (pid "
                             f"{DISTRACTOR_PID}) need no attribute row.")
            if self.unknown[subset]:
                notes.append(f"{len(self.unknown[subset])} {subset} tracklet(s) (not "
                             f"distractors) have no row in '{self.csv_path}'; training counts "
                             "their attributes as unknown.")
        if self.unmatched:
            notes.append(f"{len(self.unmatched)} row(s) of '{self.csv_path}' match no tracklet "
                         "of the split.")
        return notes


class AttributeMatcher:
    """Find each tracklet's row of an attribute CSV: the one matcher of every dataset (through
    :func:`make_tracklets`) and of ``python -m tools.verify`` (:meth:`match`, which returns
    the problems instead of raising them).

    Args:
        csv_path: the attribute CSV (named in messages).
        table: its rows by key (:func:`data.attributes.load_attribute_table`).
        n_attributes: the number of attributes (the width of an unknown row).
        rules: the dataset class's :class:`AttributeRules`.
        fix: what to do about a missing or unmatched row (``attribute_fixes.rows``).
    """

    def __init__(self, csv_path: str, table: Mapping[AttributeKey, tuple[int, ...]],
                 n_attributes: int, rules: AttributeRules = AttributeRules(),
                 fix: str = AttributeFixes.rows) -> None:
        self.csv_path, self.table, self.rules, self.fix = csv_path, table, rules, fix
        self.unknown = (-1,) * n_attributes

    def match(self, subsets: Mapping[str, Sequence[Tracklet]]) -> AttributeMatch:
        """The rows of the tracklets of every subset, and what is missing or unmatched.

        Args:
            subsets: ``{"train": ..., "query": ..., "gallery": ...}`` tracklets (all of the
                split: the unmatched rows are those no subset has).
        """
        found = AttributeMatch(self.csv_path, self.rules, self.fix)
        key, get, exact, used = self.rules.row_key, self.table.get, self.rules.exact, set()
        for subset, tracklets in subsets.items():
            attrs, missing, unknown, distractors = [], [], [], 0
            for t in tracklets:
                k = key(t)
                row = get(k)
                if row is not None:
                    used.add(k)
                if not exact and t.key[0] == DISTRACTOR_PID:
                    distractors += 1
                    row = None
                elif row is None:
                    (unknown if not exact and subset == OPTIONAL_SUBSET else missing).append(t)
                attrs.append(row if row is not None else self.unknown)
            found.attributes[subset], found.missing[subset] = attrs, missing
            found.unknown[subset], found.distractors[subset] = unknown, distractors
        found.unmatched = [k for k in self.table if k not in used and k[0] >= 0]
        return found

    def assign(self, subsets: Mapping[str, Sequence[Tracklet]]) -> dict[str, list[Tracklet]]:
        """The tracklets with their attributes; logs the subsets whose unknown rows are
        allowed (a warning each).

        Raises:
            UserError: :meth:`AttributeMatch.error`, naming the tracklets (and rows).
        """
        found = self.match(subsets)
        error = found.error()
        if error is not None:
            raise error
        for subset, unknown in found.unknown.items():
            if unknown:
                logger.warning("%d %s tracklet(s) (not distractors) have no row in '%s'; their "
                               "attributes count as unknown (-1).", len(unknown), subset,
                               self.csv_path)
        return {s: [Tracklet(t.img_paths, t.pid, t.camid, a, t.key)
                    for t, a in zip(ts, found.attributes[s], strict=True)]
                for s, ts in subsets.items()}


def make_tracklets(subsets: Mapping[str, tuple[Sequence[tuple[str, ...]], Sequence[TrackletKey]]],
                   matcher: AttributeMatcher | None = None
                   ) -> tuple[list[Tracklet], list[Tracklet], list[Tracklet]]:
    """The train, query and gallery tracklets of a split from their frames and keys.

    The pid is the key's person id, relabelled by :func:`relabel_pids` in the train subset;
    the camid is the key's camera minus 1. With a ``matcher``, the attributes are the
    tracklets' CSV rows (see :class:`AttributeRules`).

    Args:
        subsets: ``{"train" | "query" | "gallery": (the frame paths of each tracklet, the
            :attr:`Tracklet.key` of each tracklet)}``.
        matcher: the attribute rows (None: no attributes, an empty tuple each).

    Raises:
        UserError: a tracklet without the attribute row it needs (or, for own annotations, a
            row without a tracklet).
    """
    made = {}
    for subset, (paths, keys) in subsets.items():
        pids = [k[0] for k in keys]
        if subset == "train":
            labels = relabel_pids(pids)
            pids = [labels[p] for p in pids]
        made[subset] = [Tracklet(p, pid, k[1] - 1, (), k)
                        for p, pid, k in zip(paths, pids, keys, strict=True)]
    if matcher is not None:
        made = matcher.assign(made)
    return made["train"], made["query"], made["gallery"]


def sorted_entries(path: str, dirs: bool) -> list[os.DirEntry]:
    """The visible sub-folders (``dirs``) or image files of a folder, sorted by name."""
    with os.scandir(path) as it:
        entries = [e for e in it if not e.name.startswith(".")
                   and (e.is_dir() if dirs else
                        e.is_file() and e.name.lower().endswith(IMAGE_EXTENSIONS))]
    return sorted(entries, key=lambda e: e.name)


def path_parts(path: str) -> list[str]:
    """The components of a normalised path (for the layouts' :meth:`holds_frame`)."""
    return os.path.normpath(path).split(os.sep)


class VideoReIDDataset:
    """Parsed video re-ID dataset: three lists of tracklets and the attribute schema.

    Every dataset class is built the same way, ``cls(root, attributes=True, verbose=True)``;
    a class implements :meth:`_parse`.

    Class attributes (the dataset's facts; read them from the class, e.g.
    ``DATASETS["mars"].attribute_schema``):
        name: the name printed in logs and messages.
        attribute_schema: the :class:`AttributeSchema` of the attribute CSV, or None for a
            dataset without attributes (and for the folder dataset: see :meth:`schema_for`).
        attribute_file: the attribute CSV's name inside the dataset folder, or None.
        attribute_rules: the :class:`AttributeRules` of its rows (released annotations by
            default).
        published_statistics: ``{subset: (ids, tracklets, frames)}`` of the standard split as
            published (None where a number is not published in these terms), or None.
        standard_train_pids: training identities of the standard split (the classifier's
            width), or None.
        attribute_fixes: the :class:`data.attributes.AttributeFixes` of the attribute CSV's
            problems (MARS, Duke: re-download it; the folder dataset: edit it).
        files_fix: where to get the dataset's files (the fix of missing ones).
        archive: the archive(s) the frames come from, named by the fixes of missing or
            unreadable frames (None: no archive, e.g. your own frames).
        readme_section: the README section that describes the dataset's layout.
        Methods :meth:`frame_fix` and :meth:`frames_fix` (what to do about a missing or
        unreadable frame, and about missing frames), :meth:`holds_frame` (whether a path lies
        in the dataset's layout), :meth:`schema_for` and :meth:`required_schema` (the schema
        of a dataset folder), :meth:`attribute_matcher` (the matcher of its CSV).

    Args:
        root: the dataset folder (``~`` expanded).
        attributes: read the attribute files of a dataset that has them (False: no attributes,
            no attribute file needed); ignored by a dataset without attributes.
        verbose: log the statistics table.

    Raises:
        UserError: missing files (all listed), malformed split files or folders, attribute
            files or rows; each names the file and the fix.

    Attributes:
        root: the dataset folder, normalised.
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
    attribute_rules: ClassVar[AttributeRules] = AttributeRules()
    published_statistics: ClassVar[dict[str, tuple[int, int, int | None]] | None] = None
    standard_train_pids: ClassVar[int | None] = None
    attribute_fixes: ClassVar[AttributeFixes] = AttributeFixes()
    files_fix: ClassVar[str] = ("get the dataset's files as described in the README (Data "
                                "preparation), and set DATASETS.ROOT_DIR to the folder that "
                                "holds them.")
    archive: ClassVar[str | None] = None
    readme_section: ClassVar[str] = "Data preparation"

    @classmethod
    def frame_fix(cls, path: str) -> str:
        """What to do about the missing or unreadable frame ``path`` (a message's "Fix:")."""
        if cls.archive is None:
            return ("restore the file (re-extract it from the dataset's archive), or replace it "
                    "by a readable image")
        return f"restore the file(s) from {cls.archive} (re-extract it)"

    @classmethod
    def frames_fix(cls) -> str:
        """What to do about missing frames of the split (a message's "Fix:")."""
        return f"restore them (re-extract {cls.archive or 'the dataset archives'})"

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

    @classmethod
    def required_schema(cls, root: str) -> AttributeSchema | None:
        """The attribute schema at ``root`` for a run with attributes (None: the dataset has
        none); unlike :meth:`schema_for`, missing schema files raise.

        Raises:
            UserError: the folder dataset's attribute files are missing or malformed.
        """
        return cls.attribute_schema

    @classmethod
    def attribute_matcher(cls, csv_path: str, schema: AttributeSchema,
                          table: Mapping[AttributeKey, tuple[int, ...]] | None = None
                          ) -> AttributeMatcher:
        """The :class:`AttributeMatcher` of this dataset's attribute CSV by its rules.

        Args:
            csv_path: the attribute CSV.
            schema: its schema.
            table: its rows, when already read (None: read and validated here).

        Raises:
            UserError: the first problem of the CSV (only when ``table`` is None).
        """
        if table is None:
            table = load_attribute_table(csv_path, schema, cls.attribute_fixes)
        return AttributeMatcher(csv_path, table, len(schema.names), cls.attribute_rules,
                                cls.attribute_fixes.rows)

    def __init__(self, root: str, attributes: bool = True, verbose: bool = True) -> None:
        self.root = os.path.normpath(os.path.expanduser(root))
        self.train, self.query, self.gallery, schema = self._parse(self.root, attributes)
        self.num_train_pids = len({t.pid for t in self.train})
        self.attr_lens = schema.attr_lens if schema is not None else None
        self.attr_names = schema.names if schema is not None else []
        self.attr_groups = [list(g) for g in schema.groups] if schema is not None else []
        if verbose:
            self.log_statistics()

    def _parse(self, root: str, attributes: bool) -> ParsedSplit:
        """Train, query and gallery tracklets of the folder ``root``, and the attribute schema
        (None: no attributes)."""
        raise NotImplementedError

    def _check_files(self, root: str, required: Sequence[tuple[str, str]], attributes: bool
                     ) -> AttributeMatcher | None:
        """Check the ``required`` paths and, with ``attributes``, the attribute CSV (one error
        lists every missing path), and read the CSV.

        Returns:
            The matcher of the CSV; None without attributes (or a dataset without any).
        """
        csv_path = (os.path.join(root, self.attribute_file)
                    if attributes and self.attribute_file is not None else None)
        check_required_paths(self.name, [*required, *([(csv_path, "file")] if csv_path else [])],
                             self.files_fix)
        if csv_path is None:
            return None
        return self.attribute_matcher(csv_path, self.attribute_schema)

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


class TwoCameraDataset(VideoReIDDataset):
    """A dataset of ``<sequences>/<camera>/<person>/<frames>`` folders of two cameras, one
    tracklet per person and camera, without attributes (iLIDS-VID, PRID-2011).

    Train = both cameras of the training persons (pids relabelled in sorted order); query =
    the first camera and gallery = the second of the test persons. A pid is the number in the
    person folder's name; a key's tracklet number is 1.

    Class attributes beyond :class:`VideoReIDDataset`'s: ``sequences`` (the folders from the
    root down to the camera folders), ``cameras`` (the two camera folders) and
    ``required_files`` (the other files it needs, as path parts below the root). A class
    implements :meth:`_persons`.
    """

    sequences: ClassVar[tuple[str, ...]] = ()
    cameras: ClassVar[tuple[str, str]] = ("", "")
    required_files: ClassVar[tuple[tuple[str, ...], ...]] = ()

    @classmethod
    def holds_frame(cls, path: str) -> bool:
        """``.../<sequences>/<camera>/<person>/<frame>``."""
        parts, n = path_parts(path), len(cls.sequences)
        return len(parts) >= n + 3 and tuple(parts[-n - 3:-3]) == cls.sequences

    def _persons(self, root: str, cams: Sequence[str]) -> tuple[list[str], list[str]]:
        """The (training, test) person folder names (the camera folders and required files
        exist)."""
        raise NotImplementedError

    def _parse(self, root: str, attributes: bool) -> ParsedSplit:
        cams = [os.path.join(root, *self.sequences, c) for c in self.cameras]
        self._check_files(root, [*((c, "dir") for c in cams),
                                 *((os.path.join(root, *f), "file") for f in self.required_files)],
                          attributes)
        train_persons, test_persons = self._persons(root, cams)
        for p in (*train_persons, *test_persons):
            for cam in cams:
                if not os.path.isdir(os.path.join(cam, p)):
                    raise UserError(f"'{os.path.join(cam, p)}' is missing (every person of the "
                                    f"split needs both cameras). Fix: re-extract {self.archive}.")
        subsets = {"train": (train_persons, (0, 1)), "query": (test_persons, (0,)),
                   "gallery": (test_persons, (1,))}
        pairs = {s: [(p, c) for p in persons for c in cameras]
                 for s, (persons, cameras) in subsets.items()}
        return (*make_tracklets({s: ([self._frames(os.path.join(cams[c], p)) for p, c in ps],
                                     [(self._person_number(p), c + 1, 1) for p, c in ps])
                                 for s, ps in pairs.items()}), None)

    def _frames(self, folder: str) -> tuple[str, ...]:
        """Sorted image paths of a person folder (one tracklet)."""
        paths = tuple(e.path for e in sorted_entries(folder, dirs=False))
        if not paths:
            raise UserError(f"Tracklet folder '{folder}' holds no image. Fix: re-extract "
                            f"{self.archive}.")
        return paths

    @staticmethod
    def _person_number(folder: str) -> int:
        digits = "".join(ch for ch in os.path.basename(folder) if ch.isdigit())
        if not digits:
            raise UserError(f"Person folder '{folder}' has no number in its name. Fix: remove "
                            "it.")
        return int(digits)
