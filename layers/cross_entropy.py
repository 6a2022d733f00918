"""Identity classification loss with label smoothing (docs/behaviour.md#identity-loss)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class CrossEntropyLabelSmooth(nn.Module):
    """Cross entropy with label smoothing.

    ``loss = sum_c mean_i(-q_ic * log_softmax(x_i)_c)`` with smoothed targets
    ``q = (1 - epsilon) * onehot(y) + epsilon / num_classes``.

    Reference: C. Szegedy et al., "Rethinking the Inception Architecture for Computer Vision",
    CVPR 2016.

    Args:
        num_classes: number of identities C.
        epsilon: smoothing weight (0.1 in the paper).
    """

    def __init__(self, num_classes: int, epsilon: float = 0.1):
        super().__init__()
        self.num_classes = num_classes
        self.epsilon = epsilon

    def forward(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Args: inputs (B, C) logits (computed in float32); targets (B,) long class indices."""
        if inputs.shape[1] != self.num_classes:
            raise ValueError(f"CrossEntropyLabelSmooth expects {self.num_classes} classes, got "
                             f"logits of shape {tuple(inputs.shape)}")
        log_probs = F.log_softmax(inputs.float(), dim=1)                       # (B, C)
        onehot = torch.zeros_like(log_probs).scatter_(1, targets[:, None], 1.0)
        smoothed = (1 - self.epsilon) * onehot + self.epsilon / self.num_classes
        return (-smoothed * log_probs).mean(0).sum()

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, epsilon={self.epsilon}"


class CrossEntropy(nn.Module):
    """Plain cross entropy in float32 (IF_LABELSMOOTH "off")."""

    def forward(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Args: inputs (B, C) logits; targets (B,) long class indices."""
        return F.cross_entropy(inputs.float(), targets)
