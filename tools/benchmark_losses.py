"""Speed of the vectorised triplet + AITL mining against a per-sample loop baseline.

The baseline re-creates the original implementation's style: every loss call
normalises the features and builds its own distance matrix, then loops over the anchors in
Python, gathering each anchor's positives/negatives by boolean indexing and stacking the
per-anchor results. Run ``python -m tools.benchmark_losses`` for the table (forward + backward,
best-of-N milliseconds, P identities x 4 instances, 6144-d features).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from functools import partial

import torch
import torch.nn.functional as F

from layers import aitl_loss, batch_hard_triplet_loss, triplet_and_aitl_losses

ATTR_WIDTHS = (25, 41)   # MARS: ID-irrelevant and ID-relevant one-hot widths


# ----------------------------------------------------------------------------- loop baseline
def _loop_euclid(x: torch.Tensor) -> torch.Tensor:
    gram = x @ x.t()
    sq = gram.diagonal()[:, None]
    return (sq + sq.t() - 2 * gram).clamp(min=1e-12).sqrt()


def _loop_distance(features: torch.Tensor, metric: str) -> torch.Tensor:
    """Baseline: each loss call normalises and builds its distance matrix."""
    if metric == "cosine":
        x = F.normalize(features, dim=1)
        return 1 - x @ x.t()
    return _loop_euclid(features)


def loop_batch_hard_triplet_loss(features: torch.Tensor, pids: torch.Tensor, margin: float,
                                 metric: str) -> torch.Tensor:
    """BASELINE (per-anchor Python loop, as the original): batch-hard triplet loss."""
    dist = _loop_distance(features, metric)
    n = len(pids)
    mask = pids.expand(n, n).eq(pids.expand(n, n).t())
    d_ap, d_an = [], []
    for i in range(n):
        d_ap.append(dist[i][mask[i]].max().unsqueeze(0))
        d_an.append(dist[i][mask[i] == 0].min().unsqueeze(0))
    d_ap, d_an = torch.cat(d_ap), torch.cat(d_an)
    return F.margin_ranking_loss(d_an, d_ap, torch.ones_like(d_an), margin=margin)


def loop_aitl_loss(features: torch.Tensor, pids: torch.Tensor, attr_vectors: torch.Tensor,
                   metric: str, margin: float = 0.0) -> torch.Tensor:
    """BASELINE (per-anchor Python loop, as the original): AITL, anchor among its positives."""
    dist = _loop_distance(features, metric)
    attr_dist = _loop_euclid(attr_vectors)
    n = len(pids)
    mask = pids.expand(n, n).eq(pids.expand(n, n).t())
    d_far, d_near = [], []
    for i in range(n):
        d_pos = dist[i][mask[i]]
        a_pos = attr_dist[i][mask[i]]
        d_far.append(d_pos[a_pos.argmax()].unsqueeze(0))
        d_near.append(d_pos[a_pos.argmin()].unsqueeze(0))
    d_far, d_near = torch.cat(d_far), torch.cat(d_near)
    return F.margin_ranking_loss(d_near, d_far, torch.ones_like(d_far), margin=margin)


# ----------------------------------------------------------------------------- timing
def _loop_pair(feats, pids, attrs, metric) -> None:
    (loop_batch_hard_triplet_loss(feats, pids, 0.3, metric)
     + loop_aitl_loss(feats, pids, attrs[0], metric)).backward()


def _ours_pair(feats, pids, attrs, metric) -> None:
    (batch_hard_triplet_loss(feats, pids, 0.3, metric)
     + aitl_loss(feats, pids, attrs[0], metric)).backward()


def _loop_all(feats, pids, attrs, metric) -> None:
    (loop_batch_hard_triplet_loss(feats, pids, 0.3, metric)
     + loop_aitl_loss(feats, pids, attrs[0], metric)
     + loop_aitl_loss(feats, pids, attrs[1], metric)).backward()


def _ours_all(feats, pids, attrs, metric) -> None:
    triplet, aitl = triplet_and_aitl_losses(feats, pids, attrs, metric, 0.3)
    (triplet + aitl[0] + aitl[1]).backward()


def _best_ms(fn: Callable[[], None], repeats: int, device: torch.device) -> float:
    fn()   # warm-up
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(1000 * (time.perf_counter() - t0))
    return min(times)


def run_loss_benchmark(batch_sizes: Sequence[int] = (32, 64, 256), feat_dim: int = 6144,
                       repeats: int = 10, num_instances: int = 4, metric: str = "cosine",
                       device: torch.device | str = "cpu", seed: int = 0) -> dict:
    """Time forward + backward of the metric losses, ours against the loop baseline.

    Two comparisons per batch size: "pair" = :func:`batch_hard_triplet_loss` +
    :func:`aitl_loss` (public functions, each computing its distances) against the loop
    triplet + loop AITL; "all" = triplet + both AITL terms sharing one distance matrix
    (:func:`triplet_and_aitl_losses`, what the criterion runs) against three loop calls. The
    loss values of both sides are checked to agree.

    Args:
        batch_sizes: batch sizes B (P = B / num_instances identities).
        feat_dim: feature dimension D.
        repeats: timed repetitions after one warm-up run; the fastest is reported (robust to
            other load on the machine).
        num_instances: instances per identity K.
        metric: "cosine" or "euclid".
        device: where to run.
        seed: seed of the random inputs.

    Returns:
        ``{B: {"loop_pair_ms", "ours_pair_ms", "speedup_pair", "loop_all_ms", "ours_all_ms",
        "speedup_all"}}``.
    """
    device = torch.device(device)
    gen = torch.Generator().manual_seed(seed)
    results = {}
    for batch in batch_sizes:
        if batch % num_instances:
            raise ValueError(f"batch size {batch} is not a multiple of {num_instances}")
        feats = torch.randn(batch, feat_dim, generator=gen).to(device).requires_grad_()
        pids = torch.arange(batch // num_instances).repeat_interleave(num_instances).to(device)
        attrs = [torch.randn(batch, w, generator=gen).to(device) for w in ATTR_WIDTHS]

        with torch.no_grad():
            expected = torch.stack([loop_batch_hard_triplet_loss(feats, pids, 0.3, metric)]
                                   + [loop_aitl_loss(feats, pids, a, metric) for a in attrs])
            triplet, aitl = triplet_and_aitl_losses(feats, pids, attrs, metric, 0.3)
            got = torch.stack([triplet, *aitl])
        if not torch.allclose(expected, got, rtol=1e-4, atol=1e-5):
            raise AssertionError(f"loss values differ at B={batch}: loop {expected.tolist()}, "
                                 f"ours {got.tolist()}")
        row = {}
        inputs = (feats, pids, attrs, metric)
        for name, loop_fn, ours_fn in (("pair", _loop_pair, _ours_pair),
                                       ("all", _loop_all, _ours_all)):
            loop_ms = _best_ms(partial(loop_fn, *inputs), repeats, device)
            ours_ms = _best_ms(partial(ours_fn, *inputs), repeats, device)
            row.update({f"loop_{name}_ms": loop_ms, f"ours_{name}_ms": ours_ms,
                        f"speedup_{name}": loop_ms / ours_ms})
        results[batch] = row
    return results


def format_table(results: dict) -> str:
    """A text table of :func:`run_loss_benchmark` results."""
    lines = [f"{'B':>5} | {'triplet+AITL: loop':>18} {'ours':>8} {'speedup':>8} | "
             f"{'triplet+2xAITL: loop':>20} {'ours':>8} {'speedup':>8}"]
    for batch, r in results.items():
        lines.append(f"{batch:>5} | {r['loop_pair_ms']:>15.2f} ms {r['ours_pair_ms']:>5.2f} ms "
                     f"{r['speedup_pair']:>7.1f}x | {r['loop_all_ms']:>17.2f} ms "
                     f"{r['ours_all_ms']:>5.2f} ms {r['speedup_all']:>7.1f}x")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: ``python -m tools.benchmark_losses [--batch-sizes B ...] [--feat-dim D]
    [--repeats N] [--metric cosine|euclid] [--device DEV] [--threads N]`` (prints the table)."""
    parser = argparse.ArgumentParser(prog="python -m tools.benchmark_losses",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 64, 256])
    parser.add_argument("--feat-dim", type=int, default=6144)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--metric", choices=("cosine", "euclid"), default="cosine")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    results = run_loss_benchmark(args.batch_sizes, args.feat_dim, args.repeats,
                                 metric=args.metric, device=args.device)
    print(f"Forward + backward, best of {args.repeats} runs, K=4 instances, "
          f"D={args.feat_dim}, {args.metric}, device {args.device}, "
          f"{torch.get_num_threads()} threads; loop = per-anchor Python loop baseline")
    print(format_table(results))


if __name__ == "__main__":
    main()
