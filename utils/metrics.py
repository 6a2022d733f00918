"""Retrieval and attribute-recognition metrics (docs/behaviour.md#evaluation).

- :func:`compute_distance_matrix`: cosine or Euclidean distances, computed in row chunks.
- :func:`evaluate_rank`: CMC and mAP under the MARS / DukeMTMC-VID protocol, vectorised.
- :data:`RETRIEVAL_METRICS` / :func:`retrieval_metrics`: the named metrics of an evaluation
  (mAP, CMC at ranks 1, 5, 10, 20), each a function of a :class:`Retrieval`.
- :func:`attribute_metrics`: per-attribute accuracy and macro F1, plus their means.
- :func:`format_metrics_table` / :func:`format_results_table`: a small printable table of the
  metrics (mAP and CMC ranks).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

logger = logging.getLogger("reid.metrics")

# Most elements of one (rows, columns) block processed at once (bounds temporary memory).
_BLOCK_ELEMENTS = 1 << 22

ArrayLike = np.ndarray | torch.Tensor | Sequence


def _row_chunk(num_cols: int) -> int:
    """Rows per chunk so that a (rows, num_cols) block holds about ``_BLOCK_ELEMENTS`` items."""
    return max(1, _BLOCK_ELEMENTS // max(1, num_cols))


@torch.no_grad()
def compute_distance_matrix(qf: torch.Tensor, gf: torch.Tensor,
                            metric: str = "cosine") -> torch.Tensor:
    """Pairwise distances between query and gallery features, in float32.

    "cosine" is ``1 - cos(q, g)`` of the L2-normalised features (range [0, 2]). "euclid" is
    the Euclidean distance ``||q - g||`` (not squared), computed with the expansion
    ``sqrt(clamp(||q||^2 + ||g||^2 - 2 q.g, min=0))``: monotone in the exact distance, so the
    ranking equals the exact Euclidean ranking up to float32 rounding of the expansion
    (absolute error about 1e-7 * (||q||^2 + ||g||^2) on the squared distance).

    The output is filled in row chunks so that large matrices (9330 x 9330 gallery-gallery for
    re-ranking) need little memory beyond the result itself.

    Args:
        qf: (m, d) query features (any float dtype, any device).
        gf: (n, d) gallery features, same device as ``qf``.
        metric: "cosine" or "euclid" (config key DISTANCE).

    Returns:
        (m, n) float32 tensor on the device of ``qf``.

    Example:
        >>> d = compute_distance_matrix(torch.randn(4, 8), torch.randn(6, 8), "euclid")
        >>> d.shape
        torch.Size([4, 6])
    """
    if metric not in ("cosine", "euclid"):
        raise ValueError(f"metric must be 'cosine' or 'euclid' (config key DISTANCE), "
                         f"got {metric!r}")
    if qf.dim() != 2 or gf.dim() != 2 or qf.shape[1] != gf.shape[1]:
        raise ValueError(f"features must be (m, d) and (n, d) with the same d, got "
                         f"{tuple(qf.shape)} and {tuple(gf.shape)}")
    qf = qf.float()
    gf = gf.to(qf.device).float()
    out = torch.empty(qf.shape[0], gf.shape[0], dtype=torch.float32, device=qf.device)
    step = _row_chunk(gf.shape[0])
    if metric == "cosine":
        qf = F.normalize(qf, dim=1)
        gt = F.normalize(gf, dim=1).t()                                 # (d, n)
        for s in range(0, qf.shape[0], step):
            block = out[s:s + step]
            torch.mm(qf[s:s + step], gt, out=block)
            block.neg_().add_(1.0)                                      # 1 - cos
        return out
    q2 = qf.pow(2).sum(dim=1, keepdim=True)                             # (m, 1)
    g2 = gf.pow(2).sum(dim=1).unsqueeze(0)                              # (1, n)
    gt = gf.t()                                                         # (d, n)
    for s in range(0, qf.shape[0], step):
        block = out[s:s + step]
        torch.addmm(q2[s:s + step] + g2, qf[s:s + step], gt, beta=1.0, alpha=-2.0, out=block)
        block.clamp_(min=0.0).sqrt_()
    return out


def _as_int_array(x: ArrayLike, name: str, length: int) -> np.ndarray:
    a = np.asarray(x.detach().cpu() if torch.is_tensor(x) else x).astype(np.int64)
    if a.ndim != 1 or a.size != length:
        raise ValueError(f"{name} must be 1-D of length {length} to match distmat, "
                         f"got shape {a.shape}")
    return a


def _ties_before(dist: np.ndarray, removed: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                 values: np.ndarray) -> np.ndarray:
    """For each (row, col, value): kept entries of ``dist[row]`` equal to ``value`` at a lower
    column than ``col`` (the ones a stable sort ranks first)."""
    out = np.empty(rows.size, dtype=np.int64)
    columns = np.arange(dist.shape[1])
    step = _row_chunk(dist.shape[1])
    for s in range(0, rows.size, step):
        r, c, v = rows[s:s + step], cols[s:s + step], values[s:s + step]
        tie = (dist[r] == v[:, None]) & ~removed[r] & (columns[None, :] < c[:, None])  # (T, n)
        out[s:s + step] = tie.sum(axis=1)
    return out


def _rank_chunk(d: np.ndarray, q_pids: np.ndarray, q_cams: np.ndarray, g_pids: np.ndarray,
                g_cams: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First-match rank (0: no match) and AP of each query of a (c, n) block of distances."""
    c = d.shape[0]
    first_rank = np.zeros(c, dtype=np.int64)
    ap = np.zeros(c, dtype=np.float64)
    same_pid = q_pids[:, None] == g_pids[None, :]                         # (c, n)
    removed = same_pid & (q_cams[:, None] == g_cams[None, :])             # same pid and camera
    match = same_pid ^ removed                                            # same pid, other camera
    rows, cols = np.nonzero(match)                                        # (P,), (P,)
    if rows.size == 0:
        return first_rank, ap
    vals = d[rows, cols]
    # Matches of each row in ranking order: by distance, then gallery index.
    order = np.lexsort((cols, vals, rows))
    rows, cols, vals = rows[order], cols[order], vals[order]
    num_rel = np.bincount(rows, minlength=c)                              # (c,)
    hits = np.arange(rows.size) - (np.cumsum(num_rel) - num_rel)[rows] + 1   # j-th match
    # Removed entries become +inf so that they are never strictly closer than a match.
    kept_sorted = torch.from_numpy(np.sort(np.where(removed, np.inf, d), axis=1))
    thresholds = np.full((c, int(num_rel.max())), np.inf, dtype=d.dtype)  # (c, max P)
    thresholds[rows, hits - 1] = vals
    thresholds = torch.from_numpy(thresholds)
    closer = torch.searchsorted(kept_sorted, thresholds).numpy()[rows, hits - 1]
    n_equal = (torch.searchsorted(kept_sorted, thresholds, right=True).numpy()[rows, hits - 1]
               - closer)
    rank = closer + 1                                          # 1-based rank among kept entries
    tied = np.nonzero(n_equal > 1)[0]                          # the match itself is one of them
    if tied.size:
        rank[tied] += _ties_before(d, removed, rows[tied], cols[tied], vals[tied])
    ap_sum = np.bincount(rows, weights=hits / rank, minlength=c)
    has = num_rel > 0
    ap[has] = ap_sum[has] / num_rel[has]
    first = hits == 1
    first_rank[rows[first]] = rank[first]
    return first_rank, ap


def evaluate_rank(distmat: np.ndarray | torch.Tensor, q_pids: ArrayLike, g_pids: ArrayLike,
                  q_camids: ArrayLike, g_camids: ArrayLike,
                  max_rank: int = 50) -> tuple[np.ndarray, float]:
    """CMC and mAP of a query-gallery distance matrix (MARS / DukeMTMC-VID protocol).

    For each query, the gallery is ranked by increasing distance (stable sort: among equal
    distances the lower gallery index comes first); gallery entries with the query's pid AND
    camera are removed; the remaining entries of the query's pid are its matches. Queries
    with no match are skipped (their number is logged). Distractors (pid 0) stay in the
    gallery as non-matches. ``CMC[k-1]`` is the fraction of the valid queries with a match at
    rank <= k; AP is the mean, over the matches, of the precision at each match's rank
    (``sum_k precision@k * rel_k / num_rel``); mAP is the mean AP over valid queries.

    Vectorised, without a per-query loop and without argsorting the matrix: only the rank of
    each match is needed, and it is one plus the number of kept entries that a stable sort
    puts first, found by binary search in each row's sorted kept distances (ties resolved by
    gallery index). Results equal the per-query algorithm exactly.

    Args:
        distmat: (m, n) distances, numpy array or tensor (moved to the CPU). Its float dtype
            is kept, so ties are the caller's ties; NaN is rejected.
        q_pids: (m,) query identities.
        g_pids: (n,) gallery identities.
        q_camids: (m,) query cameras.
        g_camids: (n,) gallery cameras.
        max_rank: length of the returned CMC curve. When it exceeds the number of gallery
            items, the curve is padded with its last value (every valid query has its first
            match within the gallery, so that value is 1.0).

    Returns:
        ``(cmc, mAP)``: ``cmc`` float64 array of length ``max_rank`` (fractions) and ``mAP``
        a float (fraction).

    Raises:
        ValueError: on mismatched shapes, NaN distances, ``max_rank < 1``, or when no query has
            a gallery match from another camera.

    Example:
        >>> d = np.array([[0.1, 0.5, 0.2]])
        >>> cmc, mAP = evaluate_rank(d, [1], [1, 1, 2], [0], [1, 2, 1], max_rank=3)
        >>> cmc.tolist(), round(mAP, 4)  # matches at ranks 1 and 3: AP = (1/1 + 2/3) / 2
        ([1.0, 1.0, 1.0], 0.8333)
    """
    dist = np.asarray(distmat.detach().cpu() if torch.is_tensor(distmat) else distmat)
    if dist.ndim != 2:
        raise ValueError(f"distmat must be 2-D (num_query, num_gallery), got {dist.shape}")
    if max_rank < 1:
        raise ValueError(f"max_rank must be >= 1, got {max_rank}")
    if dist.dtype not in (np.float32, np.float64):
        dist = dist.astype(np.float64)  # exact for integers and float16
    m, n = dist.shape
    q_pids = _as_int_array(q_pids, "q_pids", m)
    q_cams = _as_int_array(q_camids, "q_camids", m)
    g_pids = _as_int_array(g_pids, "g_pids", n)
    g_cams = _as_int_array(g_camids, "g_camids", n)
    if np.isnan(dist).any():
        raise ValueError("distmat contains NaN (diverged training or NaN features?)")

    first_rank = np.zeros(m, dtype=np.int64)                  # 0: no match (query skipped)
    ap = np.zeros(m, dtype=np.float64)
    step = _row_chunk(n)
    for s in range(0, m, step):
        first_rank[s:s + step], ap[s:s + step] = _rank_chunk(
            dist[s:s + step], q_pids[s:s + step], q_cams[s:s + step], g_pids, g_cams)

    valid = first_rank > 0
    num_valid = int(valid.sum())
    if num_valid == 0:
        raise ValueError(f"No query has a gallery match from another camera ({m} queries, "
                         f"{n} gallery items): check the query/gallery pids and camids.")
    if num_valid < m:
        logger.info("%d of %d queries have no gallery match from another camera; they are "
                    "skipped (scores average over %d queries)", m - num_valid, m, num_valid)
    ranks = first_rank[valid]
    hist = np.bincount(ranks[ranks <= max_rank] - 1, minlength=max_rank)  # first-match ranks
    cmc = np.cumsum(hist) / num_valid
    return cmc, float(ap[valid].mean())


CMC_RANKS = (1, 5, 10, 20)   # the CMC ranks an evaluation reports


class Retrieval(NamedTuple):
    """What a retrieval metric reads: the (m, n) query-gallery distances, the (m,) query and
    (n,) gallery identities and cameras (int64), and the CMC curve and mAP that
    :func:`evaluate_rank` computed from them."""

    distmat: np.ndarray
    q_pids: np.ndarray
    g_pids: np.ndarray
    q_camids: np.ndarray
    g_camids: np.ndarray
    cmc: np.ndarray
    mAP: float


def mean_average_precision(r: Retrieval) -> dict[str, float]:
    """``{"mAP": mAP}`` (fraction)."""
    return {"mAP": float(r.mAP)}


def cmc_at_ranks(r: Retrieval) -> dict[str, float]:
    """The CMC curve at :data:`CMC_RANKS`, ``{"R1": .., "R5": .., "R10": .., "R20": ..}``
    (fractions; a rank past the curve reads its last value)."""
    return {f"R{k}": float(r.cmc[min(k, len(r.cmc)) - 1]) for k in CMC_RANKS}


RetrievalMetric = Callable[[Retrieval], dict[str, float]]

# The metrics of an evaluation, in the order of the results table: each function maps a
# Retrieval to {name: fraction}. Every name is logged in the results table, recorded in
# metrics.json, mirrored to TensorBoard and drawn in curves.png (engine.recorder), so a new
# metric is one function and one entry here.
RETRIEVAL_METRICS: list[RetrievalMetric] = [mean_average_precision, cmc_at_ranks]


def retrieval_metrics(distmat: np.ndarray | torch.Tensor, q_pids: ArrayLike, g_pids: ArrayLike,
                      q_camids: ArrayLike, g_camids: ArrayLike,
                      max_rank: int = 50) -> tuple[dict[str, float], np.ndarray]:
    """The :data:`RETRIEVAL_METRICS` of a query-gallery distance matrix, and its CMC curve.

    The arguments are :func:`evaluate_rank`'s (computed once; every metric reads its result).

    Returns:
        ``(metrics, cmc)``: ``{name: fraction}`` in :data:`RETRIEVAL_METRICS` order (today
        ``mAP, R1, R5, R10, R20``) and the float64 CMC curve of length ``max_rank``.

    Raises:
        ValueError: :func:`evaluate_rank`'s errors; two metrics of the same name.

    Example:
        >>> d = np.array([[0.1, 0.5, 0.2]])
        >>> metrics, cmc = retrieval_metrics(d, [1], [1, 1, 2], [0], [1, 2, 1], max_rank=3)
        >>> {k: round(v, 4) for k, v in metrics.items()}
        {'mAP': 0.8333, 'R1': 1.0, 'R5': 1.0, 'R10': 1.0, 'R20': 1.0}
    """
    cmc, mAP = evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank)
    dist = np.asarray(distmat.detach().cpu() if torch.is_tensor(distmat) else distmat)
    m, n = dist.shape
    r = Retrieval(dist, _as_int_array(q_pids, "q_pids", m), _as_int_array(g_pids, "g_pids", n),
                  _as_int_array(q_camids, "q_camids", m), _as_int_array(g_camids, "g_camids", n),
                  cmc, mAP)
    values: dict[str, float] = {}
    for metric in RETRIEVAL_METRICS:
        new = metric(r)
        repeated = sorted(values.keys() & new.keys())
        if repeated:
            raise ValueError(f"retrieval metric {getattr(metric, '__name__', metric)!r} repeats "
                             f"the name(s) {repeated} of an earlier one")
        values.update(new)
    return values, cmc


def attribute_metrics(preds: ArrayLike, targets: ArrayLike, attr_names: Sequence[str],
                      id_relevant: Sequence[bool]) -> dict:
    """Per-attribute accuracy and macro F1, and their means (all / ID-relevant attributes).

    Samples whose target is -1 (unknown) are ignored for that attribute. Macro F1 of an
    attribute is the mean of the per-class F1 ``2 TP / (2 TP + FP + FN)`` over the classes
    that appear in the targets or the predictions of its labelled samples (the convention of
    ``sklearn.metrics.f1_score(average="macro")``). An attribute without labelled samples gets
    NaN accuracy and F1 and is left out of the means (a mean over no attribute is NaN).

    Args:
        preds: (N, n_attr) int predicted class indices (>= 0), numpy array or tensor.
        targets: (N, n_attr) int target class indices, -1 where unknown.
        attr_names: n_attr names, used as keys of ``per_attribute``.
        id_relevant: n_attr booleans, True for the ID-relevant attributes.

    Returns:
        dict with ``per_attribute`` ({name: {"acc", "f1", "num_labelled"}}), ``mean_acc``,
        ``mean_f1``, ``mean_acc_id_relevant``, ``mean_f1_id_relevant`` (plain Python floats,
        fractions).
    """
    p = np.asarray(preds.cpu() if torch.is_tensor(preds) else preds).astype(np.int64)
    t = np.asarray(targets.cpu() if torch.is_tensor(targets) else targets).astype(np.int64)
    if p.ndim != 2 or p.shape != t.shape:
        raise ValueError(f"preds and targets must both be (N, n_attr), got {p.shape} and "
                         f"{t.shape}")
    n_attr = p.shape[1]
    if len(attr_names) != n_attr or len(id_relevant) != n_attr:
        raise ValueError(f"attr_names ({len(attr_names)}) and id_relevant "
                         f"({len(id_relevant)}) must have one entry per attribute ({n_attr})")
    if (p < 0).any():
        raise ValueError("preds must be class indices >= 0")
    if (t < -1).any():
        raise ValueError("targets must be class indices >= 0, or -1 for unknown")

    labelled = t >= 0                                                       # (N, n_attr)
    num_labelled = labelled.sum(axis=0)                                     # (n_attr,)
    num_cls = int(max(p.max(initial=0), t.max(initial=0))) + 1
    attr_idx = np.broadcast_to(np.arange(n_attr), p.shape)
    # One confusion matrix per attribute: conf[a, target, pred].
    flat = (attr_idx * num_cls + t) * num_cls + p
    conf = np.bincount(flat[labelled], minlength=n_attr * num_cls * num_cls)
    conf = conf.reshape(n_attr, num_cls, num_cls)
    tp = np.diagonal(conf, axis1=1, axis2=2)                                # (n_attr, C)
    n_true = conf.sum(axis=2)                                               # (n_attr, C)
    n_pred = conf.sum(axis=1)                                               # (n_attr, C)
    present = (n_true + n_pred) > 0
    f1_cls = np.where(present, 2 * tp / np.maximum(n_true + n_pred, 1), 0.0)
    has = num_labelled > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(has, tp.sum(axis=1) / num_labelled, np.nan)
        f1 = np.where(has, f1_cls.sum(axis=1) / present.sum(axis=1), np.nan)

    def mean(values: np.ndarray, mask: np.ndarray) -> float:
        sel = values[mask & has]
        return float(sel.mean()) if sel.size else float("nan")

    rel = np.asarray(id_relevant, dtype=bool)
    everything = np.ones(n_attr, dtype=bool)
    return {
        "per_attribute": {str(name): {"acc": float(acc[a]), "f1": float(f1[a]),
                                      "num_labelled": int(num_labelled[a])}
                          for a, name in enumerate(attr_names)},
        "mean_acc": mean(acc, everything),
        "mean_f1": mean(f1, everything),
        "mean_acc_id_relevant": mean(acc, rel),
        "mean_f1_id_relevant": mean(f1, rel),
    }


def _table(heads: Sequence[str], fractions: Sequence[float]) -> str:
    """Columns ``heads`` over one row of ``fractions`` in percent with one decimal."""
    cells = [f"{100 * float(v):.1f}" for v in fractions]
    width = max(5, *(len(x) for x in [*heads, *cells]))
    header = " | ".join(h.ljust(width) for h in heads)
    rule = "-+-".join("-" * width for _ in heads)
    row = " | ".join(c.ljust(width) for c in cells)
    return "\n".join(line.rstrip() for line in (header, rule, row))


def format_metrics_table(metrics: Mapping[str, float]) -> str:
    """A small printable table of named metrics (fractions), one column per name in order,
    in percent with one decimal (the results table of :func:`retrieval_metrics`' metrics).

    Example:
        >>> print(format_metrics_table({"mAP": 0.8, "R1": 0.9, "mINP": 0.55}))
        mAP   | R1    | mINP
        ------+-------+------
        80.0  | 90.0  | 55.0
    """
    if not metrics:
        raise ValueError("no metric to show")
    return _table(list(metrics), list(metrics.values()))


def format_results_table(cmc: ArrayLike, mAP: float,
                         ranks: Sequence[int] = CMC_RANKS) -> str:
    """A small printable table of mAP and CMC at ``ranks``, in percent with one decimal
    (:func:`format_metrics_table` of ``mAP`` and ``R<rank>``).

    Ranks beyond the length of ``cmc`` read its last value (the padding convention of
    :func:`evaluate_rank`).

    Example:
        >>> print(format_results_table(np.linspace(0.9, 1.0, 50), 0.8))
        mAP   | R1    | R5    | R10   | R20
        ------+-------+-------+-------+------
        80.0  | 90.0  | 90.8  | 91.8  | 93.9
    """
    cmc = np.asarray(cmc, dtype=np.float64).reshape(-1)
    if cmc.size == 0:
        raise ValueError("cmc is empty")
    if any(r < 1 for r in ranks):
        raise ValueError(f"ranks must be >= 1, got {tuple(ranks)}")
    return _table(["mAP"] + [f"R{r}" for r in ranks],
                  [mAP] + [cmc[min(r, cmc.size) - 1] for r in ranks])
