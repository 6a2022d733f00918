"""Center loss (off by default: the original declares it but never trains with it)."""

from __future__ import annotations

import torch
import torch.nn as nn

from layers.distance import float32_context


class CenterLoss(nn.Module):
    """Mean squared Euclidean distance of each feature to its identity's learnable centre.

    Reference: Y. Wen et al., "A Discriminative Feature Learning Approach for Deep Face
    Recognition", ECCV 2016.

    Args:
        num_classes: number of identities.
        feat_dim: feature dimension D.
    """

    def __init__(self, num_classes: int, feat_dim: int):
        super().__init__()
        self.num_classes = num_classes
        self.feat_dim = feat_dim
        self.centers = nn.Parameter(torch.randn(num_classes, feat_dim))

    def forward(self, features: torch.Tensor, pids: torch.Tensor) -> torch.Tensor:
        """Args: features (B, D) (computed in float32); pids (B,) long labels. Returns a scalar."""
        with float32_context(features.device):
            diff = features.float() - self.centers[pids]     # (B, D)
            return diff.pow(2).sum(1).clamp(min=1e-12, max=1e12).mean()

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, feat_dim={self.feat_dim}"
