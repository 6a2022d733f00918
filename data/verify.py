"""Check a dataset folder before training: ``python -m data.verify --config_file FILE``.

The command reads the config like ``main_baseline.py`` (``--config_file FILE`` and ``KEY VALUE``
overrides) and checks DATASETS.NAME at DATASETS.ROOT_DIR in four steps:

1. files: every file and folder the parser needs and the content of the split files (the
   dataset classes of :mod:`data.datasets` parse the folder; a problem here stops the check,
   since the other steps need the parsed split);
2. counts: identities, tracklets (and MARS train frames) per subset against the published
   statistics; skipped, with a note, for a synthetic dataset written by :mod:`data.synthetic`;
3. attributes (MARS and DukeMTMC-VideoReID with ATTR_RECOG_ON): the CSV's columns, every
   cell (integer, within its class count) and key (no duplicates), and that every train and
   query tracklet has a row; gallery coverage is reported;
4. images: every frame exists and decodes (a process pool, with a progress bar).

It prints a report that names every problem (file, tracklet, CSV line) with its fix and exits
0 when the folder is clean, 1 when it found a problem and 2 on a usage or config error.

Example::

    python -m data.verify --config_file configs/mars_aitl.yml DATASETS.ROOT_DIR /data/mars

From Python, :func:`verify_dataset` returns the same findings as a :class:`VerifyReport`.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm
from yacs.config import CfgNode

from data.attributes import KEY_COLUMNS, SCHEMAS, AttributeSchema, resolve_columns
from data.datasets import DATASET_CLASSES, VideoReIDDataset
from data.datasets.base import find_missing_files
from data.synthetic import MARKER_NAME
from utils.errors import UserError, run_cli

__all__ = [
    "ATTRIBUTE_FILES",
    "PUBLISHED_STATISTICS",
    "Problem",
    "VerifyReport",
    "check_attribute_csv",
    "decode_error",
    "main",
    "verify_dataset",
]

# Published statistics after dropping the junk tracklets: {subset: (ids, tracklets, frames)};
# None where the benchmark publishes no number in these terms (SPEC §2, ../shared/data).
PUBLISHED_STATISTICS: dict[str, dict[str, tuple[int, int, int | None]]] = {
    "mars": {"train": (625, 8298, 509914), "query": (626, 1980, None),
             "gallery": (621, 9330, None)},
    "duke": {"train": (702, 2196, None), "query": (702, 702, None),
             "gallery": (1110, 2636, None)},
}
# Attribute CSV of each dataset with attributes, inside DATASETS.ROOT_DIR.
ATTRIBUTE_FILES = {"mars": "mars_attributes.csv", "duke": "duke_attributes.csv"}
SUBSETS = ("train", "query", "gallery")
CHUNK = 256                              # images per decoding task

_FIX_CSV = ("use the attribute file that belongs to this dataset release (README, Data "
            "preparation)")
_FIX_COUNTS = ("the folder holds a partial or different release: re-download and re-extract "
               "the dataset (README, Data preparation)")


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
        lines = [f"Dataset {self.dataset!r} at {self.root}"]
        if self.statistics is not None:
            published = self.published
            lines.append("  subset   |   # ids | # tracklets |  # frames"
                         + (" | published ids / tracklets / frames" if published else ""))
            for name, (i, t, f) in self.statistics.items():
                row = f"  {name:<8} | {i:7d} | {t:11d} | {f:9d}"
                if published:
                    p = published[name]
                    row += f" | {p[0]} / {p[1]} / {p[2] if p[2] is not None else '-'}"
                lines.append(row)
        lines += [f"note: {n}" for n in self.notes]
        if self.images:
            lines.append(f"images: {self.images} files checked ("
                         + ("exist and decode" if self.decoded else "exist; not decoded") + ")")
        lines.append(f"checked in {self.seconds:.1f} s")
        if self.ok:
            lines.append("OK: no problem found.")
            return "\n".join(lines)
        groups: dict[tuple[str, str], list[Problem]] = {}
        for p in self.problems:
            groups.setdefault((p.check, p.fix), []).append(p)
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
        counts = {}
        for p in self.problems:
            counts[p.check] = counts.get(p.check, 0) + 1
        lines.append(f"FAILED: {len(self.problems)} problem(s) ("
                     + ", ".join(f"{k} {v}" for k, v in counts.items())
                     + "). Fix them and run the check again.")
        return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# Step 1: parse
# ----------------------------------------------------------------------------------------------
def _from_error(check: str, err: UserError, path: str = "") -> Problem:
    """A Problem from a UserError whose message ends with "Fix: ..."."""
    what, sep, fix = str(err).partition("Fix:")
    return Problem(check, what.strip() if sep else str(err), fix.strip(), path)


def _parse(name: str, root: str) -> tuple[VideoReIDDataset | None, list[Problem]]:
    """The parsed split without attributes (those are checked separately), or the problem."""
    cls = DATASET_CLASSES[name]
    try:
        if name in ATTRIBUTE_FILES:
            return cls(root, attributes=False, verbose=False), []
        return cls(root, verbose=False), []
    except UserError as e:
        return None, [_from_error("files", e)]


# ----------------------------------------------------------------------------------------------
# Step 2: counts
# ----------------------------------------------------------------------------------------------
def _check_counts(name: str, stats: dict[str, tuple[int, int, int]]) -> list[Problem]:
    problems = []
    for subset, published in PUBLISHED_STATISTICS[name].items():
        wrong = [f"{found} {what} (published {expected})"
                 for what, found, expected in zip(("identities", "tracklets", "frames"),
                                                  stats[subset], published, strict=True)
                 if expected is not None and found != expected]
        if wrong:
            problems.append(Problem("counts", f"{subset}: " + ", ".join(wrong), _FIX_COUNTS))
    return problems


# ----------------------------------------------------------------------------------------------
# Step 3: attributes
# ----------------------------------------------------------------------------------------------
def check_attribute_csv(csv_path: str, schema: AttributeSchema
                        ) -> tuple[set[tuple[int, int, int]] | None, list[Problem]]:
    """Check every cell and key of an attribute CSV; list each bad line.

    The training code (:func:`data.attributes.load_attribute_table`) stops at the first bad
    cell; this names all of them.

    Args:
        csv_path: the CSV file.
        schema: the dataset's attribute schema.

    Returns:
        (the ``(person_id, camera_id, tracklets_id)`` keys of the lines whose key cells are
        integers, or None when the file cannot be used at all; the problems).
    """
    try:
        df = pd.read_csv(csv_path, skipinitialspace=True, dtype=str)
    except (OSError, ValueError, pd.errors.ParserError) as e:
        return None, [Problem("attributes", f"cannot be read: {e}", _FIX_CSV, csv_path)]
    df.columns = [str(c).strip() for c in df.columns]
    columns, missing = resolve_columns(df.columns, schema)
    if missing:
        return None, [Problem("attributes", f"'{csv_path}' lacks the column(s) {missing}; "
                              f"expected {[*KEY_COLUMNS, *schema.names]}", _FIX_CSV, csv_path)]
    raw = df[columns]
    values = raw.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)  # (rows, cols)
    bad = np.isnan(values) | (values % 1 != 0)
    high = np.array([np.inf] * len(KEY_COLUMNS) + schema.flat_lens)
    low = np.array([-np.inf] * len(KEY_COLUMNS) + [0] * len(schema.flat_lens))
    out = ~bad & ((values < low) | (values >= high))
    problems = []
    for row, col in np.argwhere(bad | out).tolist():
        cell = raw.iat[row, col]
        if bad[row, col]:
            what = f"{cell!r} is not an integer"
        else:
            what = (f"value {cell} is outside the {int(high[col])} classes "
                    f"[0, {int(high[col]) - 1}] of this attribute")
        problems.append(Problem("attributes", f"'{csv_path}', line {row + 2}, column "
                                f"'{columns[col]}': {what}", _FIX_CSV, csv_path))
    good_key = ~bad[:, :len(KEY_COLUMNS)].any(axis=1)
    keys = values[good_key, :len(KEY_COLUMNS)].astype(np.int64)
    lines = np.flatnonzero(good_key) + 2                                 # 1-based, header = 1
    key_df = pd.DataFrame(keys)
    for _, group in key_df[key_df.duplicated(keep=False)].groupby(list(key_df.columns)):
        key = tuple(int(v) for v in keys[group.index[0]])
        problems.append(Problem("attributes", f"'{csv_path}', lines "
                                f"{lines[group.index].tolist()}: {len(group)} rows share the key "
                                f"(person_id, camera_id, tracklets_id) = {key}; every tracklet "
                                "needs exactly one row", _FIX_CSV, csv_path))
    return set(map(tuple, keys.tolist())), problems


def tracklet_key(name: str, img_paths: Sequence[str]) -> tuple[int, int, int]:
    """``(pid, 1-based camera, tracklet number)`` of a tracklet, read from its image paths.

    The attribute lookup key (SPEC §2): MARS names ``PPPPCcTttttFfff.jpg``; Duke
    ``<pid>/<tracklet>/PPPP_Cc_...``. Train pids are relabelled in the parsed split, so the
    key comes from the files.
    """
    first = img_paths[0]
    base = os.path.basename(first)
    if name == "mars":
        return int(base[:4]), int(base[5]), int(base[7:11])
    parts = first.split(os.sep)
    return int(parts[-3]), int(base[6]), int(parts[-2])


def _check_coverage(name: str, dataset: VideoReIDDataset, csv_path: str,
                    keys: set[tuple[int, int, int]]) -> tuple[list[Problem], list[str]]:
    problems, notes, used = [], [], set()
    coverage = []
    fix = ("use the attribute file that belongs to this split, or set ATTR_RECOG_ON False to "
           "train without attributes")
    for subset in SUBSETS:
        tracklets = getattr(dataset, subset)
        tkeys = [tracklet_key(name, t[0]) for t in tracklets]
        distractors = sum(k[0] == 0 for k in tkeys)
        missing = [i for i, k in enumerate(tkeys) if k[0] != 0 and k not in keys]
        used.update(k for k in tkeys if k in keys)
        n = len(tkeys) - distractors
        coverage.append(f"{subset} {n - len(missing)}/{n}")
        if distractors:
            notes.append(f"{distractors} {subset} distractor tracklet(s) (pid 0) need no "
                         "attribute row.")
        if subset == "gallery":
            if missing:
                notes.append(f"{len(missing)} gallery tracklet(s) (not distractors) have no row "
                             f"in '{csv_path}'; training counts their attributes as unknown.")
            continue
        for i in missing:
            pid, cam, tid = tkeys[i]
            folder = os.path.dirname(tracklets[i][0][0])
            problems.append(Problem(
                "attributes", f"{subset} tracklet pid {pid}, camera {cam}, tracklet {tid} "
                f"(first image {tracklets[i][0][0]}) has no row in '{csv_path}'", fix, folder))
    notes.insert(0, "tracklets with an attribute row: " + ", ".join(coverage) + ".")
    if len(keys) > len(used):
        notes.append(f"{len(keys) - len(used)} row(s) of '{csv_path}' match no tracklet of the "
                     "split.")
    return problems, notes


# ----------------------------------------------------------------------------------------------
# Step 4: images
# ----------------------------------------------------------------------------------------------
def decode_error(path: str) -> str | None:
    """Why ``path`` cannot be decoded as an image, or None when it decodes.

    JPEGs are decoded at 1/8 scale (``Image.draft``): every byte of the file is still read
    and entropy-decoded, so truncation and bit-stream errors show, at less cost (about 20%
    less for 256x128 frames).
    """
    try:
        with Image.open(path) as img:
            img.draft("RGB", (1, 1))
            img.load()
    except Exception as e:  # any failure means the training code cannot read it either
        return f"{type(e).__name__}: {e}"
    return None


def _decode_chunk(paths: Sequence[str]) -> list[tuple[int, str]]:
    return [(i, err) for i, p in enumerate(paths) if (err := decode_error(p)) is not None]


def _decode_chunks(chunks: list[list[int]], paths: Sequence[str], workers: int
                   ) -> Iterator[tuple[list[int], list[tuple[int, str]]]]:
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


def _image_fix(name: str, path: str) -> str:
    parts = path.split(os.sep)
    archive = {"mars": next((f"{d}.zip" for d in ("bbox_train", "bbox_test") if d in parts),
                            "the MARS archives"),
               "duke": "DukeMTMC-VideoReID.zip"}.get(name, "the dataset archive")
    return (f"restore the file(s) from {archive} (re-extract it), or remove the tracklet from "
            "the split files")


def _check_images(name: str, dataset: VideoReIDDataset, workers: int, progress: bool,
                  decode: bool) -> tuple[list[Problem], int]:
    paths, owner = [], []                      # every frame, and its (subset, tracklet index)
    for subset in SUBSETS:
        for i, t in enumerate(getattr(dataset, subset)):
            paths.extend(t[0])
            owner.extend([(subset, i)] * len(t[0]))
    errors: dict[int, str] = {}
    missing = find_missing_files(paths)
    missing_set = set(missing)
    todo = []
    for k, p in enumerate(paths):
        if p in missing_set:
            errors[k] = "missing"
        elif decode:
            todo.append(k)
    bar = tqdm(total=len(missing) + len(todo), initial=len(missing), unit="img",
               desc="decoding images", disable=not progress, file=sys.stderr, mininterval=0.5)
    chunks = [todo[s:s + CHUNK] for s in range(0, len(todo), CHUNK)]
    with bar:
        for chunk, found in _decode_chunks(chunks, paths, workers):
            for j, err in found:
                errors[chunk[j]] = f"cannot be decoded ({err})"
            bar.update(len(chunk))
    problems = []
    for k in sorted(errors):
        subset, i = owner[k]
        t = getattr(dataset, subset)[i]
        if name in ATTRIBUTE_FILES:
            pid, cam, tid = tracklet_key(name, t[0])
            where = f"{subset} tracklet pid {pid}, camera {cam}, tracklet {tid}"
        else:
            where = f"{subset} tracklet {i}"
        problems.append(Problem("images", f"{errors[k]}; {where}", _image_fix(name, paths[k]),
                                paths[k]))
    return problems, len(paths)


# ----------------------------------------------------------------------------------------------
# Entry points
# ----------------------------------------------------------------------------------------------
def default_workers() -> int:
    """Processes of the image check: the CPUs this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def verify_dataset(cfg: CfgNode, workers: int | None = None, progress: bool = False,
                   decode: bool = True) -> VerifyReport:
    """Check the dataset folder of a config (see the module docstring for the steps).

    Nothing is written: a missing folder is reported even when DATASETS.SYNTHETIC.IF_MISSING
    would create one.

    Args:
        cfg: the config (DATASETS.NAME, DATASETS.ROOT_DIR, ATTR_RECOG_ON are read).
        workers: processes decoding images (default: the available CPUs; 1: no pool).
        progress: show a progress bar on stderr while decoding.
        decode: decode every image (False: only check that they exist).

    Returns:
        The :class:`VerifyReport`; ``report.ok`` is True when nothing is wrong.

    Raises:
        UserError: DATASETS.ROOT_DIR is empty or DATASETS.NAME unknown (config errors).
    """
    t0 = time.perf_counter()
    name, root = cfg.DATASETS.NAME, cfg.DATASETS.ROOT_DIR
    if name not in DATASET_CLASSES:
        raise UserError(f"Unknown DATASETS.NAME {name!r}; allowed: {', '.join(DATASET_CLASSES)}.")
    if not root:
        raise UserError("DATASETS.ROOT_DIR is empty: set it to the dataset folder, e.g. "
                        "DATASETS.ROOT_DIR data/mars.")
    report = VerifyReport(name, root)
    if not os.path.isdir(root):
        note = (" (DATASETS.SYNTHETIC.IF_MISSING is True: main_baseline.py would write a "
                "synthetic dataset there)" if cfg.DATASETS.SYNTHETIC.IF_MISSING else "")
        report.problems.append(Problem("files", f"the dataset folder does not exist{note}",
                                       "set DATASETS.ROOT_DIR to the folder that holds the "
                                       "dataset (README, Data preparation)", root))
        report.seconds = time.perf_counter() - t0
        return report

    dataset, problems = _parse(name, root)
    report.problems += problems
    if dataset is None:
        report.notes.append("the split could not be parsed: counts, attributes and images were "
                            "not checked; fix the problem above and run the check again.")
        report.seconds = time.perf_counter() - t0
        return report
    report.statistics = dataset.statistics()

    if os.path.isfile(os.path.join(root, MARKER_NAME)):
        report.notes.append(f"synthetic dataset ({MARKER_NAME} present): the comparison with "
                            "the published statistics is skipped.")
    elif name in PUBLISHED_STATISTICS:
        report.published = PUBLISHED_STATISTICS[name]
        report.problems += _check_counts(name, report.statistics)
    else:
        report.notes.append(f"no published statistics to compare for {name!r}.")

    if name in ATTRIBUTE_FILES and cfg.ATTR_RECOG_ON:
        csv_path = os.path.join(root, ATTRIBUTE_FILES[name])
        if not os.path.isfile(csv_path):
            report.problems.append(Problem(
                "attributes", "the attribute file is missing",
                f"get {ATTRIBUTE_FILES[name]} from the AITL code release (README, Data "
                "preparation), or set ATTR_RECOG_ON False to train without attributes",
                csv_path))
        else:
            keys, problems = check_attribute_csv(csv_path, SCHEMAS[name])
            report.problems += problems
            if keys is not None:
                problems, notes = _check_coverage(name, dataset, csv_path, keys)
                report.problems += problems
                report.notes += notes
    elif name in ATTRIBUTE_FILES:
        report.notes.append("ATTR_RECOG_ON is False: the attribute file is not checked.")

    problems, report.images = _check_images(name, dataset, workers or default_workers(),
                                            progress, decode)
    report.problems += problems
    report.decoded = decode
    report.seconds = time.perf_counter() - t0
    return report


def main(argv: list[str] | None = None) -> int:
    """Command line; returns 0 (clean), 1 (problems found) or 2 (usage or config error)."""
    from config import load_cfg
    from engine.defaults import DEFAULT_CONFIG, default_argument_parser, parse_command_line

    parser = default_argument_parser(
        "Check a dataset folder: every file the parser needs, counts against the published "
        "statistics, attribute coverage, every image decodable. Exits 0 when clean, 1 when "
        "it found a problem, 2 on a usage or config error.", DEFAULT_CONFIG)
    parser.prog = "python -m data.verify"
    parser.add_argument("--workers", type=int, default=None,
                        help="processes decoding images (default: the available CPUs)")
    parser.add_argument("--limit", type=int, default=100,
                        help="most problems listed per kind (0: all; default 100)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--skip-images", action="store_true",
                        help="only check that the images exist, do not decode them")

    @run_cli
    def run(args_list: list[str] | None) -> int:
        args = parse_command_line(parser, args_list)
        cfg = load_cfg(args.config_file or None, args.opts)
        report = verify_dataset(cfg, workers=args.workers or None,
                                progress=not args.no_progress, decode=not args.skip_images)
        print(report.format(args.limit))
        return 0 if report.ok else 1

    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
