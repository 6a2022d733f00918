"""Timing of :func:`utils.metrics.evaluate_rank` against the original's per-query loop.

A MARS-sized problem (1980 queries x 9330 gallery tracklets, 625 identities, 6 cameras,
distractors with pid 0, some queries without a cross-camera match) is generated from
clustered random features; both implementations evaluate it and must agree.

Usage::

    python -m tools.benchmark_eval [--num-q 1980] [--num-g 9330] [--seed 0] [--no-loop]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from utils.metrics import compute_distance_matrix, evaluate_rank


def make_mars_like_problem(num_q: int = 1980, num_g: int = 9330, seed: int = 0,
                           num_ids: int = 625, num_cams: int = 6, feat_dim: int = 128,
                           distractor_frac: float = 0.25, no_match_frac: float = 0.07,
                           noise: float = 1.5) -> dict[str, np.ndarray]:
    """A random retrieval problem shaped like the MARS test split.

    Identities have a standard-normal feature centre; tracklet features are the centre plus
    ``noise`` times standard-normal noise (1.5 gives R1 about 90%); distractors (pid 0) are
    noise. ``no_match_frac`` of the identities are seen by one camera only, so their queries
    have no gallery match from another camera (MARS: 140 of 1980).

    Returns:
        dict with ``distmat`` (num_q, num_g) float32 cosine distances and ``q_pids``,
        ``g_pids``, ``q_camids``, ``g_camids`` (int64 arrays).
    """
    rng = np.random.default_rng(seed)
    pids = np.arange(1, num_ids + 1)
    one_cam = rng.random(num_ids) < no_match_frac           # identities seen by one camera
    home_cam = rng.integers(0, num_cams, num_ids)

    def tracklets(count: int) -> tuple[np.ndarray, np.ndarray]:
        idx = np.concatenate([np.arange(min(count, num_ids)),
                              rng.integers(0, num_ids, max(0, count - num_ids))])
        cams = np.where(one_cam[idx], home_cam[idx], rng.integers(0, num_cams, idx.size))
        return idx, cams

    q_idx, q_cams = tracklets(num_q)
    num_distractors = int(round(distractor_frac * num_g))
    g_idx, g_cams = tracklets(num_g - num_distractors)
    centres = rng.standard_normal((num_ids, feat_dim))
    qf = centres[q_idx] + noise * rng.standard_normal((q_idx.size, feat_dim))
    gf = np.concatenate([centres[g_idx] + noise * rng.standard_normal((g_idx.size, feat_dim)),
                         noise * rng.standard_normal((num_distractors, feat_dim))])
    g_pids = np.concatenate([pids[g_idx], np.zeros(num_distractors, dtype=np.int64)])
    g_cams = np.concatenate([g_cams, rng.integers(0, num_cams, num_distractors)])
    distmat = compute_distance_matrix(torch.from_numpy(qf), torch.from_numpy(gf), "cosine")
    return {"distmat": distmat.numpy(), "q_pids": pids[q_idx].astype(np.int64),
            "g_pids": g_pids.astype(np.int64), "q_camids": q_cams.astype(np.int64),
            "g_camids": g_cams.astype(np.int64)}


def evaluate_rank_per_query_loop(distmat: np.ndarray, q_pids: np.ndarray, g_pids: np.ndarray,
                                 q_camids: np.ndarray, g_camids: np.ndarray,
                                 max_rank: int = 50) -> tuple[np.ndarray, float]:
    """The original's algorithm (baseline for timing): one Python iteration per query.

    The whole matrix is argsorted once (stable here, so that ties match ours), then for each
    query: take its row of the order, drop gallery entries with its pid and camera, cumulate
    the match indicator for the CMC, and compute AP with a Python list of the precision at
    every rank. Requires num_g >= max_rank.
    """
    order = np.argsort(distmat, axis=1, kind="stable")
    matches = (g_pids[order] == q_pids[:, None]).astype(np.int32)
    all_cmc, all_ap = [], []
    for q in range(distmat.shape[0]):
        row = order[q]
        keep = ~((g_pids[row] == q_pids[q]) & (g_camids[row] == q_camids[q]))
        raw = matches[q][keep]
        if not raw.any():
            continue
        cmc = raw.cumsum()
        cmc[cmc > 1] = 1
        all_cmc.append(cmc[:max_rank])
        hits = raw.cumsum()
        precision = np.asarray([x / (i + 1.0) for i, x in enumerate(hits)]) * raw
        all_ap.append(precision.sum() / raw.sum())
    if not all_cmc:
        raise ValueError("no query has a gallery match from another camera")
    cmc = np.asarray(all_cmc, dtype=np.float32).sum(axis=0) / len(all_cmc)
    return cmc, float(np.mean(all_ap))


def run_eval_benchmark(num_q: int = 1980, num_g: int = 9330, seed: int = 0,
                       with_loop: bool = True, repeats: int = 3) -> dict:
    """Time evaluate_rank (best of ``repeats``) and, optionally, the per-query loop baseline.

    Returns:
        dict with ``num_q``, ``num_g``, ``fast_s``, ``R1``, ``mAP`` and, with the loop,
        ``loop_s``, ``speedup``, ``max_cmc_diff`` and ``map_diff`` (fast minus loop).
    """
    p = make_mars_like_problem(num_q, num_g, seed)
    args = (p["distmat"], p["q_pids"], p["g_pids"], p["q_camids"], p["g_camids"])
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        cmc, mAP = evaluate_rank(*args)
        times.append(time.perf_counter() - t0)
    out = {"num_q": num_q, "num_g": num_g, "fast_s": min(times), "R1": float(cmc[0]),
           "mAP": mAP}
    if with_loop:
        t0 = time.perf_counter()
        cmc_loop, map_loop = evaluate_rank_per_query_loop(*args)
        out["loop_s"] = time.perf_counter() - t0
        out["speedup"] = out["loop_s"] / out["fast_s"]
        out["max_cmc_diff"] = float(np.abs(cmc - cmc_loop).max())
        out["map_diff"] = mAP - map_loop
    return out


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m tools.benchmark_eval [--num-q N] [--num-g N] [--seed S]
    [--no-loop]`` (prints the timing table)."""
    parser = argparse.ArgumentParser(prog="python -m tools.benchmark_eval",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--num-q", type=int, default=1980)
    parser.add_argument("--num-g", type=int, default=9330)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-loop", action="store_true", help="skip the slow loop baseline")
    args = parser.parse_args(argv)
    r = run_eval_benchmark(args.num_q, args.num_g, args.seed, with_loop=not args.no_loop)
    print(f"evaluate_rank on {r['num_q']} x {r['num_g']} (torch threads: "
          f"{torch.get_num_threads()}); R1 {100 * r['R1']:.1f}%, mAP {100 * r['mAP']:.1f}%")
    print(f"{'implementation':<28}{'seconds':>10}")
    print(f"{'vectorised (best of 3)':<28}{r['fast_s']:>10.3f}")
    if "loop_s" in r:
        print(f"{'per-query loop (original)':<28}{r['loop_s']:>10.3f}")
        print(f"speed-up {r['speedup']:.1f}x; max |CMC diff| {r['max_cmc_diff']:.2e}, "
              f"mAP diff {r['map_diff']:.2e}")


if __name__ == "__main__":
    main()
