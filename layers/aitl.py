"""Attribute-aware identity-hard triplet loss (AITL, docs/behaviour.md#aitl), tensor mining."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from layers.distance import pairwise_distance
from layers.triplet import _batch_hard_from_dist, same_identity


def _aitl_pairs(attr_vectors: torch.Tensor, same_id: torch.Tensor,
                exclude_self: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Indices of the attribute-farthest and attribute-nearest positive of every anchor.

    The attribute distances only select indices, so they are computed without gradient, in
    float32, with the original's clamped Euclidean formula (the anchor's distance to itself is
    ``1e-6``, the smallest possible). ``argmax``/``argmin`` return the first of tied indices,
    as the original's per-anchor ``argmax`` over its positives does (masking keeps the order
    of the positives).

    Args:
        attr_vectors: (B, A) attribute logits of one group.
        same_id: (B, B) bool same-identity matrix.
        exclude_self: leave the anchor out of its own positives.

    Returns:
        far (B,) long, near (B,) long, valid (B,) bool — False for anchors without positives
        (only possible with ``exclude_self``); their indices are meaningless.
    """
    with torch.no_grad():
        attr_dist = pairwise_distance(attr_vectors.detach(), "euclid")     # (B, B) float32
        positive = same_id
        if exclude_self:
            positive = same_id & ~torch.eye(len(same_id), dtype=torch.bool,
                                            device=same_id.device)
        far = attr_dist.masked_fill(~positive, float("-inf")).argmax(1)
        near = attr_dist.masked_fill(~positive, float("inf")).argmin(1)
        return far, near, positive.any(1)


def _aitl_from_dist(dist: torch.Tensor, same_id: torch.Tensor, attr_vectors: torch.Tensor,
                    margin: float = 0.0, exclude_self: bool = False) -> torch.Tensor:
    """AITL from a precomputed (B, B) feature distance matrix; see :func:`aitl_loss`."""
    far, near, valid = _aitl_pairs(attr_vectors, same_id, exclude_self)
    d_far = dist.gather(1, far[:, None]).squeeze(1)     # (B,)
    d_near = dist.gather(1, near[:, None]).squeeze(1)   # (B,)
    losses = F.relu(d_far - d_near + margin)
    if not exclude_self:      # every anchor is its own positive
        return losses.mean()
    # Anchors without another positive are left out (no host sync: masked mean).
    return (losses * valid).sum() / valid.sum().clamp(min=1)


def aitl_loss(features: torch.Tensor, pids: torch.Tensor, attr_vectors: torch.Tensor,
              metric: str, margin: float = 0.0, exclude_self: bool = False) -> torch.Tensor:
    """Attribute-aware identity-hard triplet loss.

    For each anchor i, among its positives P(i) (same identity, i itself included unless
    ``exclude_self``), ``p_far`` and ``p_near`` are the positives whose attribute vectors are
    the farthest from and the nearest to a_i (Euclidean); the loss is
    ``mean(relu(d(i, p_far) - d(i, p_near) + margin))`` with d the feature distance. With i in
    P(i), p_near is usually i itself (as in the original). Gradients flow
    through d only.

    Reference: Z. Chen, A. Li, S. Jiang, Y. Wang, "Attribute-aware Identity-hard Triplet Loss
    for Video-based Person Re-identification", arXiv 2006.07597.

    Args:
        features: (B, D) features (distances are computed in float32).
        pids: (B,) int identity labels.
        attr_vectors: (B, A) attribute logits of one attribute group.
        metric: "cosine" or "euclid" (DISTANCE).
        margin: margin (SOLVER.AITL_MARGIN, 0 in the paper).
        exclude_self: leave the anchor out of its positives (SOLVER.AITL_EXCLUDE_SELF); anchors
            without another positive are then left out of the mean.

    Returns:
        Scalar float32 loss.

    Example::

        feats = torch.randn(8, 16, requires_grad=True)
        pids = torch.arange(2).repeat_interleave(4)           # 2 identities x 4 instances
        aitl_loss(feats, pids, torch.randn(8, 25), "cosine").backward()
    """
    dist = pairwise_distance(features, metric)
    return _aitl_from_dist(dist, same_identity(pids), attr_vectors, margin, exclude_self)


def triplet_and_aitl_losses(features: torch.Tensor, pids: torch.Tensor,
                            attr_groups: Sequence[torch.Tensor], metric: str, margin: float,
                            aitl_margin: float = 0.0, aitl_exclude_self: bool = False,
                            ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The batch-hard triplet loss and one AITL term per attribute group, sharing ONE
    feature distance matrix (the features are normalised once).

    Args:
        features: (B, D) features.
        pids: (B,) int identity labels.
        attr_groups: attribute-logit matrices, each (B, A_k) (empty: triplet only).
        metric, margin: as in :func:`batch_hard_triplet_loss`.
        aitl_margin, aitl_exclude_self: as ``margin``/``exclude_self`` of :func:`aitl_loss`.

    Returns:
        (triplet loss, [AITL loss of each group]), unweighted scalars.
    """
    dist = pairwise_distance(features, metric)      # (B, B) float32
    same_id = same_identity(pids)
    triplet = _batch_hard_from_dist(dist, same_id, margin)
    aitl = [_aitl_from_dist(dist, same_id, a, aitl_margin, aitl_exclude_self)
            for a in attr_groups]
    return triplet, aitl
