"""k-reciprocal re-ranking of a query-gallery distance matrix (TEST.RE_RANKING).

Reference: Zhong, Zheng, Cao, Li. "Re-ranking Person Re-identification with k-reciprocal
Encoding". CVPR 2017.

Written from the paper's algorithm, with the conventions of the authors' public
implementation so that scores are comparable with published re-ranked numbers: the input
distances are squared and each row is divided by its maximum; encodings V are normalised to
sum 1; the k1/2 expansion needs strictly more than 2/3 of the candidate's set inside R(p, k1);
the local query expansion averages the V of the k2 nearest neighbours (the item itself
included). Neighbour lists use a stable order (ties: lower index first).

Memory stays near the size of the inputs: the (Q+G) x (Q+G) distance matrix is never built
(rows are assembled in chunks from the three blocks) and V is sparse.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import sparse

# Most elements of one dense block (rows of the full matrix, or Jaccard terms) at once.
_BLOCK_ELEMENTS = 1 << 22


def _to_numpy(x: np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    a = np.asarray(x.detach().cpu() if torch.is_tensor(x) else x, dtype=np.float32)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D distance matrix, got shape {a.shape}")
    if np.isnan(a).any():
        raise ValueError(f"{name} contains NaN")
    return a


def smallest_k_stable(rows: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the ``k`` smallest entries of each row, in stable sorted order.

    Equal to ``np.argsort(rows, axis=1, kind="stable")[:, :k]`` (ties: lower index first) at
    the cost of a partition instead of a full sort.

    Args:
        rows: (c, n) float array without NaN.
        k: number of neighbours, 1 <= k; clipped to n.

    Returns:
        (c, min(k, n)) int64 array.
    """
    c, n = rows.shape
    k = min(k, n)
    if k == n:
        return np.argsort(rows, axis=1, kind="stable")
    part = np.argpartition(rows, k - 1, axis=1)
    kth = np.take_along_axis(rows, part[:, k - 1:k], axis=1)              # (c, 1) k-th value
    below = rows < kth                                                    # (c, n)
    # Of the entries equal to the k-th value, keep the ones with the lowest indices.
    need = k - below.sum(axis=1, keepdims=True)
    equal = rows == kth
    chosen = below | (equal & (np.cumsum(equal, axis=1) <= need))          # k per row
    cols = np.nonzero(chosen)[1].reshape(c, k)                            # ascending index
    order = np.argsort(np.take_along_axis(rows, cols, axis=1), axis=1, kind="stable")
    return np.take_along_axis(cols, order, axis=1)


def _reciprocal_mask(neighbours: np.ndarray) -> np.ndarray:
    """(N, k) bool: ``neighbours[i, t]`` has i among its own first k neighbours."""
    own = np.arange(neighbours.shape[0])[:, None, None]
    return (neighbours[neighbours] == own).any(axis=2)                    # (N, k, k) -> (N, k)


def re_ranking(q_g_dist: np.ndarray | torch.Tensor, q_q_dist: np.ndarray | torch.Tensor,
               g_g_dist: np.ndarray | torch.Tensor, k1: int = 20, k2: int = 6,
               lambda_value: float = 0.3) -> np.ndarray:
    """k-reciprocal re-ranking: Jaccard distance of k-reciprocal encodings mixed with the
    original distance.

    Steps (paper §3): rank all Q+G items for each item; R(p, k1) = the k-reciprocal
    neighbours of p among its k1+1 nearest (p included); expand R*(p) = R(p, k1) plus
    R(q, round(k1/2)) of each q in R(p, k1) that shares more than 2/3 of it with R(p, k1);
    V_p[g] = exp(-d(p, g)) on R*(p), normalised to sum 1; local query expansion
    V_p <- mean of V over the k2 nearest neighbours of p; Jaccard distance
    1 - sum_j min(V_p, V_g) / sum_j max(V_p, V_g) (sparse, through the nonzeros of V);
    result = (1 - lambda) * Jaccard + lambda * d, with d the row-max-normalised squared
    distance.

    Args:
        q_g_dist: (Q, G) query-gallery distances (e.g. from compute_distance_matrix).
        q_q_dist: (Q, Q) query-query distances.
        g_g_dist: (G, G) gallery-gallery distances.
        k1: size of the k-reciprocal neighbourhood (paper: 20).
        k2: size of the local query expansion (paper: 6); 1 switches it off.
        lambda_value: weight of the original distance (paper: 0.3).

    Returns:
        (Q, G) float32 numpy array of re-ranked distances.

    Example:
        >>> f = torch.randn(10, 4)
        >>> d = lambda a, b: torch.cdist(a, b).numpy()
        >>> re_ranking(d(f[:3], f[3:]), d(f[:3], f[:3]), d(f[3:], f[3:]), k1=4, k2=2).shape
        (3, 7)
    """
    qg = _to_numpy(q_g_dist, "q_g_dist")
    qq = _to_numpy(q_q_dist, "q_q_dist")
    gg = _to_numpy(g_g_dist, "g_g_dist")
    nq, ng = qg.shape
    if qq.shape != (nq, nq) or gg.shape != (ng, ng):
        raise ValueError(f"shapes must be (Q, G), (Q, Q), (G, G); got {qg.shape}, {qq.shape}, "
                         f"{gg.shape}")
    if k1 < 1 or k2 < 1 or not 0.0 <= lambda_value <= 1.0:
        raise ValueError(f"need k1 >= 1, k2 >= 1 and 0 <= lambda_value <= 1; got k1={k1}, "
                         f"k2={k2}, lambda_value={lambda_value}")
    dist = _Distances(qq, qg, gg)
    neighbours = dist.nearest(max(k1 + 1, k2))                            # step 1
    pr, pc = _expanded_reciprocal_sets(neighbours, k1)                    # steps 2-3
    v = _encodings(dist, neighbours, pr, pc, k2)                          # steps 4-5
    return _jaccard_mix(dist, v, lambda_value)                            # step 6


class _Distances:
    """The (Q+G, Q+G) squared distance matrix of all items, row-max normalised, in blocks.

    Items 0..Q-1 are the queries, Q..Q+G-1 the gallery; ``row_max`` is filled by
    :meth:`nearest`.
    """

    def __init__(self, qq: np.ndarray, qg: np.ndarray, gg: np.ndarray) -> None:
        self.qq, self.qg, self.gg = qq, qg, gg
        self.nq, self.ng = qg.shape
        self.n = self.nq + self.ng
        self.row_max = np.empty(self.n, dtype=np.float32)

    def full_rows(self, start: int, end: int) -> np.ndarray:
        """Rows [start, end) of the squared (Q+G, Q+G) distance matrix; one block side."""
        nq = self.nq
        if end <= nq:
            block = np.concatenate([self.qq[start:end], self.qg[start:end]], axis=1)
        else:
            a, b = start - nq, end - nq
            block = np.concatenate([self.qg[:, a:b].T, self.gg[a:b]], axis=1)
        return block * block                                              # (end-start, n)

    def nearest(self, num_nb: int) -> np.ndarray:
        """Row maxima and the (n, min(num_nb, n)) nearest neighbours of every item (on
        normalised distances, as the reference ranks them)."""
        n, nq = self.n, self.nq
        neighbours = np.empty((n, min(num_nb, n)), dtype=np.int64)
        step = max(1, _BLOCK_ELEMENTS // n)
        for lo, hi in ((0, nq), (nq, n)):
            for s in range(lo, hi, step):
                e = min(s + step, hi)
                rows = self.full_rows(s, e)
                mx = rows.max(axis=1)
                self.row_max[s:e] = np.where(mx > 0, mx, 1.0)
                neighbours[s:e] = smallest_k_stable(rows / self.row_max[s:e, None], num_nb)
        return neighbours

    def normalised(self, r: np.ndarray, c: np.ndarray) -> np.ndarray:
        """Normalised squared distances of the item pairs (r, c) (1-D index arrays)."""
        nq = self.nq
        out = np.empty(r.size, dtype=np.float32)
        rq, cq = r < nq, c < nq
        for sel, mat, i, j in ((rq & cq, self.qq, r, c), (rq & ~cq, self.qg, r, c - nq),
                               (~rq & cq, self.qg, c, r - nq),
                               (~rq & ~cq, self.gg, r - nq, c - nq)):
            v = mat[i[sel], j[sel]]
            out[sel] = v * v
        return out / self.row_max[r]


def _expanded_reciprocal_sets(neighbours: np.ndarray, k1: int) -> tuple[np.ndarray, np.ndarray]:
    """R*(p) of every item p as (row, column) index pairs, sorted by p * n + column.

    R(p, k1) and R(p, round(k1/2)) are masks over the neighbour lists; a candidate
    q = fwd[p, t] in R(p, k1) adds R(q, k1/2) when |R(q, k1/2) & R(p, k1)| > 2/3 |R(q, k1/2)|.
    """
    n = neighbours.shape[0]
    fwd = neighbours[:, :k1 + 1]                                          # (n, K1)
    recip = _reciprocal_mask(fwd)
    half = neighbours[:, :round(k1 / 2) + 1]                              # (n, Kh)
    recip_half = _reciprocal_mask(half)
    own = np.arange(n)[:, None]
    r_codes = (own * n + fwd)[recip]                                      # pairs p*n + x
    members = half[fwd]                                                   # (n, K1, Kh)
    members_ok = recip_half[fwd]                                          # (n, K1, Kh)
    member_codes = own[:, :, None] * n + members
    overlap = (np.isin(member_codes, r_codes) & members_ok).sum(axis=2)   # (n, K1)
    accept = recip & (3 * overlap > 2 * members_ok.sum(axis=2))
    codes = np.unique(np.concatenate([r_codes, member_codes[accept[:, :, None] & members_ok]]))
    return codes // n, codes % n


def _encodings(dist: _Distances, neighbours: np.ndarray, pr: np.ndarray, pc: np.ndarray,
               k2: int) -> sparse.csr_matrix:
    """V: Gaussian-kernel encodings on R*(p), rows normalised to sum 1, then the local query
    expansion over the k2 nearest neighbours (the item included). (n, n) sparse."""
    n = dist.n
    w = np.exp(-dist.normalised(pr, pc).astype(np.float64))
    w /= np.bincount(pr, weights=w, minlength=n)[pr]
    v = sparse.csr_matrix((w, (pr, pc)), shape=(n, n))
    if k2 > 1:
        nb = neighbours[:, :k2]                                           # (n, k2')
        qe = sparse.csr_matrix((np.full(nb.size, 1.0 / nb.shape[1]),
                                (np.repeat(np.arange(n), nb.shape[1]), nb.ravel())),
                               shape=(n, n))
        v = (qe @ v).tocsr()
    return v


def _query_blocks(per_query: np.ndarray, nq: int, ng: int) -> np.ndarray:
    """Boundaries of chunks of query rows with a bounded number of (query, gallery, column)
    terms and at most _BLOCK_ELEMENTS // ng rows."""
    chunk_of = (np.cumsum(per_query) // _BLOCK_ELEMENTS).astype(np.int64)
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(chunk_of)) + 1, [nq]])
    rows_per_block = max(1, _BLOCK_ELEMENTS // ng)
    return np.unique(np.concatenate([bounds, np.arange(0, nq, rows_per_block)]))


def _jaccard_mix(dist: _Distances, v: sparse.csr_matrix, lambda_value: float) -> np.ndarray:
    """(1 - lambda) * Jaccard + lambda * normalised distance, query x gallery (Q, G) float32.

    The Jaccard distance goes through the nonzeros of V: sum_j min(V_p, V_g) over columns j
    where both are nonzero; sum_j max = |V_p| + |V_g| - sum_j min.
    """
    nq, ng = dist.nq, dist.ng
    v_sum = np.asarray(v.sum(axis=1)).ravel()                             # (n,) ~1
    vq = v[:nq].tocoo()
    vg = v[nq:].tocsc()                                                   # column -> gallery
    col_nnz = np.diff(vg.indptr)
    per_query = np.bincount(vq.row, weights=col_nnz[vq.col], minlength=nq)
    bounds = _query_blocks(per_query, nq, ng)
    order = np.argsort(vq.row, kind="stable")
    q_row, q_col, q_val = vq.row[order], vq.col[order], vq.data[order]
    row_start = np.searchsorted(q_row, bounds)
    out = np.empty((nq, ng), dtype=np.float32)
    for s, e, a, b in zip(bounds[:-1], bounds[1:], row_start[:-1], row_start[1:]):
        rr, cc, vv = q_row[a:b], q_col[a:b], q_val[a:b]
        cnt = col_nnz[cc]
        first = np.repeat(vg.indptr[cc] - (np.cumsum(cnt) - cnt), cnt)
        pos = first + np.arange(first.size)                               # into vg.indices
        mins = np.minimum(np.repeat(vv, cnt), vg.data[pos])
        key = (np.repeat(rr, cnt) - s) * ng + vg.indices[pos]
        inter = np.bincount(key, weights=mins, minlength=(e - s) * ng).reshape(e - s, ng)
        union = v_sum[s:e, None] + v_sum[None, nq:] - inter               # > 0 unless both empty
        jaccard = 1.0 - inter / np.maximum(union, np.finfo(np.float64).tiny)
        original = dist.qg[s:e] * dist.qg[s:e] / dist.row_max[s:e, None]
        out[s:e] = jaccard * (1.0 - lambda_value) + original * lambda_value
    return out
