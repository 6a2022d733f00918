"""Command: rank the tracklets of one feature file against another's (``tools.export_features``).

    python -m tools.search --query query.npz --gallery gallery.npz --topk 5 --out ranks.csv \
        [--pictures DIR --num-pictures 4]

The distance is evaluation's (:func:`engine.evaluator.query_gallery_distances` with the
DISTANCE, TEST.FEAT_NORM and TEST.RE_RANKING that the files' ``meta`` records), and so is the
protocol: a gallery tracklet of the query's pid seen by the query's camera is no retrieval
(:func:`tools.visualize.top_k`). ``ranks.csv`` holds the top-k of every query: ``query, rank,
gallery, distance, same_id`` (tracklet names as in the files; ``same_id`` 1/0, empty when a
file has no pids). When both files carry pids and camids, the evaluation's metrics (mAP and
CMC ranks) are printed (:func:`utils.metrics.retrieval_metrics`): for the query and gallery
files of the same weights they are the numbers of ``main_baseline.py --eval-only``.
``--pictures`` draws the ranked list of the first queries (their frames are read under the
``root`` that ``meta`` records).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import zipfile

import numpy as np
import torch

from data.datasets.base import sorted_entries
from engine.evaluator import query_gallery_distances
from engine.recorder import metric_values
from tools.visualize import top_k
from utils.checkpoint import check_writable_file
from utils.errors import UserError, run_cli
from utils.metrics import format_metrics_table, retrieval_metrics
from utils.pictures import draw_ranked_list

__all__ = ["REQUIRED_FIELDS", "build_parser", "load_features", "main", "search",
           "written_summary"]

REQUIRED_FIELDS = ("features", "tracklets", "meta")
# The meta entries that decide the distance; query and gallery files must agree on them.
DISTANCE_KEYS = ("metric", "feat_norm", "re_rank")
_FIX = "write it with python -m tools.export_features"


def load_features(path: str) -> dict:
    """The arrays of a feature file, checked, and its ``meta`` as a dict.

    Returns:
        ``{"features": (N, D) float32, "tracklets": (N,) str, "meta": dict}`` plus ``pids``,
        ``camids`` (N,) int64 and ``attr_pred`` where the file has them.

    Raises:
        UserError: a missing file, not a ``.npz`` file, a missing field, fields of different
            lengths, or a ``meta`` without the distance settings; the message names the file.
    """
    if not os.path.isfile(path):
        raise UserError(f"Feature file '{path}' does not exist. Fix: {_FIX}.")
    try:
        with np.load(path, allow_pickle=False) as npz:
            data = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise UserError(f"'{path}' is not a .npz feature file ({e}). Fix: {_FIX}.") from None
    missing = [k for k in REQUIRED_FIELDS if k not in data]
    if missing:
        raise UserError(f"'{path}' lacks the field(s) {missing} (it has {sorted(data)}). "
                        f"Fix: {_FIX}.")
    n = len(data["features"])
    if data["features"].ndim != 2 or any(len(data[k]) != n for k in data if k != "meta"):
        shapes = {k: v.shape for k, v in data.items() if k != "meta"}
        raise UserError(f"'{path}': features must be (N, D) and every other field hold N rows; "
                        f"got {shapes}. Fix: {_FIX}.")
    try:
        data["meta"] = json.loads(str(data["meta"]))
    except ValueError:
        data["meta"] = None
    if not isinstance(data["meta"], dict) or any(k not in data["meta"] for k in DISTANCE_KEYS):
        raise UserError(f"'{path}': meta must be a JSON object with {list(DISTANCE_KEYS)}. "
                        f"Fix: {_FIX}.")
    data["features"] = data["features"].astype(np.float32, copy=False)
    return data


def _check_pair(query: dict, gallery: dict, paths: tuple[str, str]) -> None:
    """Raise when the two files cannot be compared (feature sizes, distance settings)."""
    dq, dg = query["features"].shape[1], gallery["features"].shape[1]
    if dq != dg:
        raise UserError(f"The query features ('{paths[0]}') are {dq}-dimensional, the gallery "
                        f"features ('{paths[1]}') {dg}-dimensional. Fix: export both with the "
                        "same config and weights.")
    differ = [k for k in DISTANCE_KEYS if query["meta"][k] != gallery["meta"][k]]
    if differ:
        raise UserError(f"'{paths[0]}' and '{paths[1]}' were exported with different "
                        f"{', '.join(differ)}. Fix: export both with the same config.")


def _ranked(dist: np.ndarray, query: dict, gallery: dict, topk: int) -> list[np.ndarray]:
    """The gallery indices of each query's top-k, nearest first (the protocol's camera rule
    when both files have pids and camids)."""
    if all(k in f for f in (query, gallery) for k in ("pids", "camids")):
        return [top_k(dist[i], query["pids"][i], query["camids"][i], gallery["pids"],
                      gallery["camids"], topk) for i in range(len(dist))]
    return [np.argsort(row, kind="stable")[:topk] for row in dist]


def _write_ranks(path: str, dist: np.ndarray, ranked: list[np.ndarray], query: dict,
                 gallery: dict) -> None:
    """The CSV of the top-k lists: query, rank, gallery, distance, same_id."""
    with_ids = "pids" in query and "pids" in gallery
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(("query", "rank", "gallery", "distance", "same_id"))
            for i, order in enumerate(ranked):
                for r, j in enumerate(order.tolist(), start=1):
                    same = int(query["pids"][i] == gallery["pids"][j]) if with_ids else ""
                    writer.writerow((query["tracklets"][i], r, gallery["tracklets"][j],
                                     f"{dist[i, j]:.6g}", same))
    except OSError as e:
        raise UserError(f"Cannot write '{path}': {e.strerror or e}. Choose an --out you can "
                        "write to.") from None


def _frames(data: dict, i: int) -> tuple[tuple[str, ...], int, int]:
    """``(frame paths, pid, camid)`` of tracklet ``i`` of a file, for the pictures."""
    path = os.path.join(data["meta"].get("root", ""), str(data["tracklets"][i]))
    if os.path.isdir(path):
        frames = tuple(e.path for e in sorted_entries(path, dirs=False))
    else:
        frames = (path,) if os.path.isfile(path) else ()
    if not frames:
        raise UserError(f"The frames of tracklet '{data['tracklets'][i]}' are not at '{path}' "
                        "(the root that the file's meta records). Fix: draw the pictures where "
                        "the tracklets are, or leave out --pictures.")
    pid = int(data["pids"][i]) if "pids" in data else -1
    return frames, pid, int(data["camids"][i]) if "camids" in data else -1


def _draw(folder: str, count: int, dist: np.ndarray, ranked: list[np.ndarray], query: dict,
          gallery: dict) -> list[str]:
    """The ranked-list pictures of the first ``count`` queries; returns their paths."""
    written = []
    for i in range(min(count, len(ranked))):
        order = ranked[i].tolist()
        q = _frames(query, i)
        g = [_frames(gallery, j) for j in order]
        written.append(draw_ranked_list(q, g, dist[i, order].tolist(),
                                        [t[1] == q[1] and q[1] != -1 for t in g],
                                        os.path.join(folder, f"query_{i:04d}.png")))
    return written


def search(query_path: str, gallery_path: str, topk: int, out: str,
           pictures: str | None = None, num_pictures: int = 4) -> dict | None:
    """Rank, write the CSV (and pictures), and evaluate when both files carry pids.

    Args:
        query_path, gallery_path: the two feature files.
        topk: retrievals per query in the CSV and the pictures (fewer for a query with fewer
            gallery tracklets that count as retrievals).
        out: the CSV to write (its missing parent folders are created).
        pictures: the folder of the ranked-list pictures (None: none drawn).
        num_pictures: how many queries (the first ones) are drawn.

    Returns:
        the evaluation's metrics (``mAP, R1, R5, R10, R20``: fractions, see
        :func:`utils.metrics.retrieval_metrics`) and ``cmc`` when both files have pids and
        camids and a query has a match on another camera, else None.

    Raises:
        UserError: a bad file (see :func:`load_features`), files of different feature sizes or
            distance settings, an unwritable ``out``.
    """
    return _search(query_path, gallery_path, topk, out, pictures, num_pictures)[0]


def written_summary(ranked: list[np.ndarray], topk: int, num_gallery: int,
                    camera_rule: bool) -> str:
    """What the CSV holds, in words: "the top-5 of every query", or the top-k actually written
    when fewer gallery tracklets than ``topk`` count for a query.

    Args:
        ranked: the gallery indices written for each query.
        topk: the ``--topk`` asked for.
        num_gallery: the number of gallery tracklets.
        camera_rule: whether the protocol's camera rule applied (both files have pids, camids).

    Example:
        >>> written_summary([np.arange(20)] * 3, 99, 20, False)
        'the top-20 of every query (all 20 gallery tracklets: fewer than --topk 99)'
    """
    counts = [len(r) for r in ranked] or [0]
    low, high = min(counts), max(counts)
    if low == high == topk:
        return f"the top-{topk} of every query"
    rule = ("; a gallery tracklet of the query's pid seen by the query's camera is no retrieval"
            if camera_rule and low < num_gallery else "")
    if low == high:
        every = (f"all {num_gallery} gallery tracklets" if high == num_gallery else
                 f"the {high} of the {num_gallery} gallery tracklets that count for each query")
        return f"the top-{high} of every query ({every}: fewer than --topk {topk}{rule})"
    return (f"the top-{low} to top-{high} of the queries (every gallery tracklet that counts for "
            f"the query, at most --topk {topk}{rule})")


def _search(query_path: str, gallery_path: str, topk: int, out: str, pictures: str | None,
            num_pictures: int) -> tuple[dict | None, str]:
    """:func:`search`, and the :func:`written_summary` of the CSV."""
    if topk < 1:
        raise UserError(f"--topk must be >= 1; got {topk}.")
    check_writable_file(out)            # before the work, not after it
    query, gallery = load_features(query_path), load_features(gallery_path)
    _check_pair(query, gallery, (query_path, gallery_path))
    meta = query["meta"]
    dist = query_gallery_distances(torch.from_numpy(query["features"]),
                                   torch.from_numpy(gallery["features"]), meta["metric"],
                                   meta["feat_norm"], meta["re_rank"])           # (M, N)
    ranked = _ranked(dist, query, gallery, topk)
    _write_ranks(out, dist, ranked, query, gallery)
    if pictures:
        _draw(pictures, num_pictures, dist, ranked, query, gallery)
    with_ids = all(k in f for f in (query, gallery) for k in ("pids", "camids"))
    summary = written_summary(ranked, topk, len(gallery["features"]), with_ids)
    if not with_ids:
        return None, summary
    try:
        metrics, cmc = retrieval_metrics(dist, query["pids"], gallery["pids"], query["camids"],
                                         gallery["camids"])
    except ValueError:            # no query has a match on another camera
        return None, summary
    return {**metrics, "cmc": cmc}, summary


def build_parser() -> argparse.ArgumentParser:
    """The command's options."""
    parser = argparse.ArgumentParser(
        prog="python -m tools.search",
        description="Rank query features against gallery features (.npz files of "
                    "python -m tools.export_features); write the top-k per query to a CSV and "
                    "print CMC/mAP when both files carry pids.")
    parser.add_argument("--query", required=True, metavar="Q.npz")
    parser.add_argument("--gallery", required=True, metavar="G.npz")
    parser.add_argument("--topk", type=int, default=10, help="retrievals per query (10)")
    parser.add_argument("--out", required=True, metavar="ranks.csv",
                        help="the CSV to write (missing folders are created)")
    parser.add_argument("--pictures", default=None, metavar="DIR",
                        help="draw the ranked lists of the first queries into DIR")
    parser.add_argument("--num-pictures", type=int, default=4, help="queries drawn (4)")
    return parser


@run_cli
def main(argv: list[str] | None = None) -> int:
    """Command line; returns 0, or 2 (message on stderr) for a user error."""
    args = build_parser().parse_args(argv)
    results, summary = _search(args.query, args.gallery, args.topk, args.out, args.pictures,
                               args.num_pictures)
    print(f"wrote {summary} to {args.out}")
    if args.pictures:
        print(f"drew the ranked lists of the first queries in {args.pictures}")
    if results is not None:
        print(format_metrics_table(metric_values(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
