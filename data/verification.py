"""Checks of a dataset folder before training; ``python -m tools.verify`` is their command.

:func:`verify_dataset` checks DATASETS.NAME at DATASETS.ROOT_DIR of a config in four steps:

1. files: every file and folder the parser needs and the content of the split files (the
   dataset classes of :mod:`data.datasets` parse the folder; a problem here stops the check,
   since the other steps need the parsed split);
2. counts: identities, tracklets (and MARS train frames) per subset against the dataset
   class's ``published_statistics``; skipped, with a note, for a synthetic dataset (one that
   holds :data:`SYNTHETIC_MARKER`, written by ``python -m tools.synthetic``);
3. attributes (a dataset class with an ``attribute_file``, with ATTR_RECOG_ON): every
   problem of the CSV (:func:`data.attributes.check_attribute_csv`), then the rows of the
   split's tracklets by the matcher the parsers use
   (:class:`data.datasets.base.AttributeMatcher`, by the class's ``attribute_rules``): every
   train and query tracklet has a row, gallery coverage is noted; a folder dataset
   (:mod:`data.datasets.folder`) also needs its ``attributes.yml``, a row for every tracklet
   and no row without a tracklet;
4. images: every frame exists, decodes, and has a PIL mode that training decodes to 8-bit RGB
   (:func:`data.transforms.pil_rgb`: 16-bit grey, palette, alpha, CMYK, ... are read; a
   float frame, for one, is refused by name), in a process pool.

It returns a :class:`VerifyReport` that names every problem (file, tracklet, CSV line) with
its fix, in the words of the dataset class (MARS and Duke: their archives and attribute
download; the folder dataset: its attributes.csv and tracklet folders);
``report.format()`` is the printed report. Nothing is printed here: progress goes to an
optional callback.

Example::

    report = verify_dataset(load_cfg("configs/mars_aitl.yml", ["DATASETS.ROOT_DIR", "/data/mars"]))
    print(report.format())
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field

from PIL import Image
from yacs.config import CfgNode

from data.attributes import check_attribute_csv
from data.datasets import DATASETS, VideoReIDDataset
from data.datasets.base import SPLIT_FOLDERS, find_missing_files
from data.transforms import MODE_FIX, FrameModeError, pil_rgb
from utils.errors import UserError

__all__ = ["SYNTHETIC_MARKER", "Problem", "VerifyReport", "decode_error", "default_workers",
           "verify_dataset"]

SUBSETS = SPLIT_FOLDERS
CHUNK = 256                              # images per decoding task
# The file a synthetic dataset holds (tools.synthetic writes it last, with its arguments).
SYNTHETIC_MARKER = "synthetic_dataset.json"

_FIX_COUNTS = ("the folder holds a partial or different release: re-download and re-extract "
               "the dataset (README, Data preparation)")

# (images checked so far, images to check)
ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the dataset folder.

    Attributes:
        check: the step that found it: "files", "counts", "attributes" or "images".
        what: what is wrong, naming the tracklet, CSV line or value where it applies.
        fix: what to do about it.
        path: the file or folder concerned ("" when the message names several).
    """

    check: str
    what: str
    fix: str
    path: str = ""


@dataclass
class VerifyReport:
    """The findings of :func:`verify_dataset`.

    Attributes:
        dataset: DATASETS.NAME.
        root: DATASETS.ROOT_DIR.
        problems: everything wrong, in check order.
        notes: information that is not a problem (skipped steps, gallery coverage).
        statistics: ``{subset: (ids, tracklets, frames)}`` of the parsed split (None when
            it could not be parsed).
        published: the published statistics the counts were compared with (None: no
            comparison).
        images: number of image files checked.
        decoded: whether the images were decoded (else only checked for existence).
        seconds: wall time of the check.
    """

    dataset: str
    root: str
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    statistics: dict[str, tuple[int, int, int]] | None = None
    published: dict[str, tuple[int, int, int | None]] | None = None
    images: int = 0
    decoded: bool = True
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems

    def format(self, limit: int = 100) -> str:
        """The printed report.

        Args:
            limit: most problems listed per group of problems sharing a fix (0: all).
        """
        lines = [f"Dataset {self.dataset!r} at {self.root}", *self._statistics_lines()]
        lines += [f"note: {n}" for n in self.notes]
        if self.images:
            lines.append(f"images: {self.images} files checked ("
                         + ("exist and decode" if self.decoded else "exist; not decoded") + ")")
        lines.append(f"checked in {self.seconds:.1f} s")
        if self.ok:
            lines.append("OK: no problem found.")
            return "\n".join(lines)
        lines += self._problem_lines(limit)
        counts: dict[str, int] = {}
        for p in self.problems:
            counts[p.check] = counts.get(p.check, 0) + 1
        lines.append(f"FAILED: {len(self.problems)} problem(s) ("
                     + ", ".join(f"{k} {v}" for k, v in counts.items())
                     + "). Fix them and run the check again.")
        return "\n".join(lines)

    def _statistics_lines(self) -> list[str]:
        """The table of the parsed split's counts (and the published ones)."""
        if self.statistics is None:
            return []
        published = self.published
        lines = ["  subset   |   # ids | # tracklets |  # frames"
                 + (" | published ids / tracklets / frames" if published else "")]
        for name, (i, t, f) in self.statistics.items():
            row = f"  {name:<8} | {i:7d} | {t:11d} | {f:9d}"
            if published:
                p = published[name]
                row += f" | {p[0]} / {p[1]} / {p[2] if p[2] is not None else '-'}"
            lines.append(row)
        return lines

    def _problem_lines(self, limit: int) -> list[str]:
        """The problems, grouped by (check, fix), at most ``limit`` listed per group."""
        groups: dict[tuple[str, str], list[Problem]] = {}
        for p in self.problems:
            groups.setdefault((p.check, p.fix), []).append(p)
        lines = []
        for (check, fix), probs in groups.items():
            lines.append(f"[{check}] {len(probs)} problem(s):")
            shown = probs if limit <= 0 else probs[:limit]
            for p in shown:
                text = f"{p.path}: {p.what}" if p.path and p.path not in p.what else p.what
                lines.append("  - " + text.replace("\n", "\n    "))
            if len(shown) < len(probs):
                lines.append(f"  ... and {len(probs) - len(shown)} more (--limit 0 lists all)")
            if fix:
                lines.append(f"  fix: {fix}")
        return lines


# ----------------------------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------------------------
def default_workers() -> int:
    """Processes of the image check: the CPUs this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def verify_dataset(cfg: CfgNode, workers: int | None = None, progress: ProgressFn | None = None,
                   decode: bool = True) -> VerifyReport:
    """Check the dataset folder of a config (see the module docstring for the steps).

    Nothing is written: a missing folder is reported even when DATASETS.SYNTHETIC.IF_MISSING
    would create one.

    Args:
        cfg: the config (DATASETS.NAME, DATASETS.ROOT_DIR, ATTR_RECOG_ON are read).
        workers: processes decoding images (default: the available CPUs; 1: no pool).
        progress: called as ``progress(images checked, images to check)`` during the image
            step (after the existence check, then after each decoded chunk).
        decode: decode every image (False: only check that they exist).

    Returns:
        The :class:`VerifyReport`; ``report.ok`` is True when nothing is wrong.

    Raises:
        UserError: DATASETS.ROOT_DIR is empty or DATASETS.NAME unknown (config errors).
    """
    t0 = time.perf_counter()
    name, root = cfg.DATASETS.NAME, cfg.DATASETS.ROOT_DIR
    DATASETS.get(name)                      # an unknown name: UserError listing the datasets
    if not root:
        raise UserError("DATASETS.ROOT_DIR is empty: set it to the dataset folder, e.g. "
                        "DATASETS.ROOT_DIR data/mars.")
    report = VerifyReport(name, root)
    dataset = _check_files(cfg, report)
    if dataset is not None:
        report.statistics = dataset.statistics()
        _compare_counts(dataset, report)
        _check_attributes(dataset, cfg.ATTR_RECOG_ON, report)
        problems, report.images = _check_images(dataset, workers or default_workers(),
                                                progress, decode)
        report.problems += problems
        report.decoded = decode
    report.seconds = time.perf_counter() - t0
    return report


# ----------------------------------------------------------------------------------------------
# Step 1: files
# ----------------------------------------------------------------------------------------------
def _check_files(cfg: CfgNode, report: VerifyReport) -> VideoReIDDataset | None:
    """The parsed split without attributes (those are checked separately), or None.

    A missing folder or a parser error goes to ``report`` as a "files" problem.
    """
    root = cfg.DATASETS.ROOT_DIR
    cls = DATASETS[cfg.DATASETS.NAME]
    if not os.path.isdir(root):
        note = (" (DATASETS.SYNTHETIC.IF_MISSING is True: main_baseline.py would write a "
                "synthetic dataset there)" if cfg.DATASETS.SYNTHETIC.IF_MISSING else "")
        report.problems.append(Problem("files", f"the dataset folder does not exist{note}",
                                       "set DATASETS.ROOT_DIR to the folder that holds the "
                                       f"dataset (README, {cls.readme_section})", root))
        return None
    try:
        return cls(root, attributes=False, verbose=False)
    except UserError as e:
        report.problems.append(_problem("files", e))
    report.notes.append("the split could not be parsed: counts, attributes and images were "
                        "not checked; fix the problem above and run the check again.")
    return None


def _problem(check: str, err: UserError, path: str = "") -> Problem:
    """A :class:`Problem` from a UserError whose message ends with "Fix: ..."."""
    what, sep, fix = str(err).partition("Fix:")
    return Problem(check, what.strip() if sep else str(err), fix.strip(), path)


# ----------------------------------------------------------------------------------------------
# Step 2: counts
# ----------------------------------------------------------------------------------------------
def _compare_counts(dataset: VideoReIDDataset, report: VerifyReport) -> None:
    """Compare the parsed counts with the dataset class's published statistics."""
    if os.path.isfile(os.path.join(report.root, SYNTHETIC_MARKER)):
        report.notes.append(f"synthetic dataset ({SYNTHETIC_MARKER} present): the comparison "
                            "with the published statistics is skipped.")
        return
    published = type(dataset).published_statistics
    if published is None:
        report.notes.append(f"no published statistics to compare for {report.dataset!r}.")
        return
    report.published = published
    for subset, expected_counts in published.items():
        wrong = [f"{found} {what} (published {expected})"
                 for what, found, expected in zip(("identities", "tracklets", "frames"),
                                                  report.statistics[subset], expected_counts,
                                                  strict=True)
                 if expected is not None and found != expected]
        if wrong:
            report.problems.append(Problem("counts", f"{subset}: " + ", ".join(wrong),
                                           _FIX_COUNTS))


# ----------------------------------------------------------------------------------------------
# Step 3: attributes
# ----------------------------------------------------------------------------------------------
def _check_attributes(dataset: VideoReIDDataset, attributes_on: bool,
                      report: VerifyReport) -> None:
    """Check the attribute files (every problem of the CSV) and match the split's tracklets
    to the rows (:meth:`data.datasets.base.AttributeMatcher.match`, by the class's rules)."""
    cls = type(dataset)
    if cls.attribute_file is None:
        return
    if not attributes_on:
        report.notes.append("ATTR_RECOG_ON is False: the attribute file is not checked.")
        return
    try:
        schema = cls.required_schema(report.root)
    except UserError as e:
        report.problems.append(_problem("attributes", e))
        return
    csv_path = os.path.join(report.root, cls.attribute_file)
    if not os.path.isfile(csv_path):
        report.problems.append(Problem("attributes", "the attribute file is missing",
                                       cls.attribute_fixes.missing, csv_path))
        return
    table, problems = check_attribute_csv(csv_path, schema, cls.attribute_fixes)
    report.problems += [Problem("attributes", p.message, p.fix, p.path) for p in problems]
    if table is None:
        return
    found = cls.attribute_matcher(csv_path, schema, table).match(
        {s: getattr(dataset, s) for s in SUBSETS})
    report.problems += [Problem("attributes", what, found.fix, path)
                        for what, path in found.problems()]
    report.notes += found.notes()


# ----------------------------------------------------------------------------------------------
# Step 4: images
# ----------------------------------------------------------------------------------------------
def decode_error(path: str) -> tuple[str, str] | None:
    """What keeps training from reading ``path``, or None when it decodes to RGB.

    JPEGs are decoded at 1/8 scale (``Image.draft``): every byte of the file is still read
    and entropy-decoded, so truncation and bit-stream errors show, at less cost than a full
    decode. The decoded image then goes through training's conversion to
    RGB (:func:`data.transforms.pil_rgb`), so a PIL mode that training refuses is found here.

    Returns:
        None, or ``(kind, text)``: kind "decode" (the file cannot be decoded; text
        ``"<exception type>: <message>"``) or "mode" (a refused PIL mode; text names it).
    """
    try:
        with Image.open(path) as img:
            img.draft("RGB", (1, 1))
            img.load()
            pil_rgb(img)
    except FrameModeError as e:
        return "mode", str(e)
    except Exception as e:  # any failure means the training code cannot read it either
        return "decode", f"{type(e).__name__}: {e}"
    return None


def _decode_chunk(paths: Sequence[str]) -> list[tuple[int, tuple[str, str]]]:
    return [(i, err) for i, p in enumerate(paths) if (err := decode_error(p)) is not None]


def _decode_chunks(chunks: list[list[int]], paths: Sequence[str], workers: int
                   ) -> Iterator[tuple[list[int], list[tuple[int, tuple[str, str]]]]]:
    """``(chunk, its decode errors)`` for each chunk of path indices, in completion order.

    Decoding runs in ``workers`` processes (PIL holds the GIL while it parses headers, so
    threads would not scale); with one worker, in this process.
    """
    if workers <= 1:
        for chunk in chunks:
            yield chunk, _decode_chunk([paths[k] for k in chunk])
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(_decode_chunk, [paths[k] for k in c]): c for c in chunks}
        for future in as_completed(futures):
            yield futures[future], future.result()


def _image_errors(paths: Sequence[str], workers: int, progress: ProgressFn | None,
                  decode: bool) -> dict[int, tuple[str, str]]:
    """``{index into paths: (kind, what)}`` of the bad images: kind "missing", "decode" (what:
    "cannot be decoded (...)") or "mode" (what: "is not read by training: PIL mode ...")."""
    missing = set(find_missing_files(paths))
    errors = {k: ("missing", "missing") for k, p in enumerate(paths) if p in missing}
    todo = [k for k, p in enumerate(paths) if decode and p not in missing]
    total, done = len(errors) + len(todo), len(errors)
    if progress is not None:
        progress(done, total)
    chunks = [todo[s:s + CHUNK] for s in range(0, len(todo), CHUNK)]
    for chunk, found in _decode_chunks(chunks, paths, workers):
        for j, (kind, err) in found:
            errors[chunk[j]] = (kind, f"cannot be decoded ({err})" if kind == "decode" else
                                f"is not read by training: {err}")
        done += len(chunk)
        if progress is not None:
            progress(done, total)
    return errors


def _check_images(dataset: VideoReIDDataset, workers: int,
                  progress: ProgressFn | None, decode: bool) -> tuple[list[Problem], int]:
    """The missing or undecodable frames of every tracklet, and the number of frames."""
    paths, owner = [], []                      # every frame, and its (subset, tracklet index)
    for subset in SUBSETS:
        for i, t in enumerate(getattr(dataset, subset)):
            paths.extend(t.img_paths)
            owner.extend([(subset, i)] * len(t.img_paths))
    errors = _image_errors(paths, workers, progress, decode)
    cls = type(dataset)
    problems = []
    for k in sorted(errors):
        subset, i = owner[k]
        if cls.attribute_schema is not None:
            pid, cam, tid = getattr(dataset, subset)[i].key
            where = f"{subset} tracklet pid {pid}, camera {cam}, tracklet {tid}"
        else:
            where = f"{subset} tracklet {i}"
        kind, what = errors[k]
        fix = MODE_FIX if kind == "mode" else cls.frame_fix(paths[k])
        problems.append(Problem("images", f"{what}; {where}", fix, paths[k]))
    return problems, len(paths)
