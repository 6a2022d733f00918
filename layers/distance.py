"""Pairwise distances of the metric losses (triplet, AITL), always computed in float32.

Both metrics are computed from the Gram matrix ``G = X X^T`` of the batch: the cosine
normalises G by its diagonal (the squared norms) instead of normalising the (B, D) features,
and the Euclidean distance is ``sqrt(clamp(G_ii + G_jj - 2 G_ij, min=1e-12))``, the
original's clamped expanded form, whose diagonal is then exactly ``sqrt(1e-12) = 1e-6``. The
backward pass is one (B, B) x (B, D) product; no (B, D) element-wise pass is needed.
"""

from __future__ import annotations

import contextlib

import torch

METRICS = ("cosine", "euclid")


def check_metric(metric: str) -> None:
    """Raise a ValueError unless ``metric`` is one of :data:`METRICS`."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS} (DISTANCE in the config), "
                         f"got {metric!r}")


def float32_context(device: torch.device) -> contextlib.AbstractContextManager:
    """A context that turns autocast off on ``device`` (losses mine in float32)."""
    if torch.amp.is_autocast_available(device.type):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()


class _Gram(torch.autograd.Function):
    """``x @ x.T`` with a one-product backward ``(g + g^T) @ x`` (autograd would do two)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return x @ x.t()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return (grad + grad.t()) @ x


def distance_from_gram(gram: torch.Tensor, metric: str) -> torch.Tensor:
    """(B, B) distances from the (B, B) Gram matrix of a batch (see the module doc)."""
    sq = gram.diagonal()                                    # (B,) squared norms
    if metric == "cosine":
        norm = sq.sqrt().clamp(min=1e-12)                   # as F.normalize's eps
        return 1 - gram / (norm[:, None] * norm[None, :])
    return (sq[:, None] + sq[None, :] - 2 * gram).clamp(min=1e-12).sqrt()


def pairwise_distance(features: torch.Tensor, metric: str) -> torch.Tensor:
    """Distance matrix of a batch of features in float32, also under autocast.

    Args:
        features: (B, D) tensor of any floating dtype.
        metric: "cosine" (``1 - cos``, i.e. of the L2-normalised features) or "euclid"
            (``sqrt(clamp(||x_i||^2 + ||x_j||^2 - 2 x_i.x_j, min=1e-12))``; the distance of a
            sample to itself is ``1e-6``).

    Returns:
        (B, B) float32 tensor, differentiable with respect to ``features``.
    """
    check_metric(metric)
    with float32_context(features.device):
        x = features.float()
        gram = _Gram.apply(x) if x.requires_grad else x @ x.t()    # (B, B)
        return distance_from_gram(gram, metric)
