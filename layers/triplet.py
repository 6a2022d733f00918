"""Batch-hard triplet loss (docs/behaviour.md#batch-hard-triplet), masked tensor reductions."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from layers.distance import pairwise_distance


def same_identity(pids: torch.Tensor) -> torch.Tensor:
    """(B, B) bool matrix, True where samples i and j have the same identity."""
    return pids[:, None] == pids[None, :]


def _batch_hard_from_dist(dist: torch.Tensor, same_id: torch.Tensor,
                          margin: float) -> torch.Tensor:
    """Batch-hard triplet loss from a precomputed distance matrix.

    Per anchor: the farthest positive (the anchor itself included) and the closest negative;
    ``mean(relu(d_ap - d_an + margin))`` — equal to the original's ``MarginRankingLoss`` with
    ``y = 1``. ``amax``/``amin`` split the gradient evenly between tied distances, as the
    original's per-anchor ``dist[i][mask[i]].max()`` does. An anchor without negatives (a batch
    of one identity) contributes 0.

    Args:
        dist: (B, B) float distances.
        same_id: (B, B) bool, see :func:`same_identity`.
        margin: triplet margin.
    """
    d_ap = dist.masked_fill(~same_id, float("-inf")).amax(1)   # (B,)
    d_an = dist.masked_fill(same_id, float("inf")).amin(1)     # (B,)
    return F.relu(d_ap - d_an + margin).mean()


def batch_hard_triplet_loss(features: torch.Tensor, pids: torch.Tensor, margin: float,
                            metric: str) -> torch.Tensor:
    """Batch-hard triplet loss (Hermans et al., 2017), any number of instances per identity.

    Reference: A. Hermans, L. Beyer, B. Leibe, "In Defense of the Triplet Loss for Person
    Re-Identification", arXiv 1703.07737.

    Args:
        features: (B, D) features (any floating dtype; distances are computed in float32).
        pids: (B,) int identity labels.
        margin: margin (SOLVER.MARGIN, 0.3 in the paper).
        metric: "cosine" or "euclid" (DISTANCE).

    Returns:
        Scalar float32 loss.

    Example::

        feats = torch.randn(8, 16, requires_grad=True)
        pids = torch.arange(4).repeat_interleave(2)          # 4 identities x 2 instances
        batch_hard_triplet_loss(feats, pids, 0.3, "cosine").backward()
    """
    dist = pairwise_distance(features, metric)
    return _batch_hard_from_dist(dist, same_identity(pids), margin)
