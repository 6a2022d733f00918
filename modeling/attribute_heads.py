"""The two attribute streams (ASTA): attribute logits and spatio-temporal attention maps.

Both streams read the DETACHED backbone map, so attribute losses never reach the backbone
(SPEC §3); their attention maps are returned undetached, so the re-ID losses that use them in
the ATTR_TA fusion do train the stream's attention layers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _weighted_spatial_mean(feat: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``mean over (h, w) of weights[:, k] * feat`` for every k, without building the products.

    Args:
        feat: (N, C, h, w).
        weights: (N, K, h, w).

    Returns:
        (N, C, K) tensor, equal to ``(weights[:, None] * feat[:, :, None]).mean((3, 4))``.
    """
    hw = feat.shape[-2] * feat.shape[-1]
    # (N, C, hw) @ (N, hw, K) -> (N, C, K)
    return torch.bmm(feat.flatten(2), weights.flatten(2).transpose(1, 2)) / hw


class AttributeStreamBCE(nn.Module):
    """One attribute group in "bce" mode: one multi-label classifier over the group's one-hots.

    conv 1x1 (C->C) + BN + ReLU, ``attention_s_conv`` (3x3, C->1) gives one spatial map per
    frame, ``attention_t_conv`` (Conv1d over time, the h*w positions as channels, kernel 3)
    mixes the frames' maps, sigmoid gives the spatio-temporal attention A. The attended input
    map is averaged over space and time, ReLU, ``classifier`` (Linear C -> num_outputs).

    Args:
        in_channels: C, channels of the backbone map.
        num_outputs: total one-hot length of the group (e.g. 25 or 41 on MARS).
        num_positions: h*w of the backbone map (the original hard-codes 128 = 16x8).
    """

    def __init__(self, in_channels: int, num_outputs: int, num_positions: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, in_channels, 1)
        self.bn = nn.BatchNorm2d(in_channels)
        self.attention_s_conv = nn.Conv2d(in_channels, 1, 3, padding=1)
        self.attention_t_conv = nn.Conv1d(num_positions, num_positions, 3, padding=1)
        self.classifier = nn.Linear(in_channels, num_outputs)

    def forward(self, feat: torch.Tensor, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Args:
            feat: (B*T, C, h, w) detached backbone map, frames of a clip consecutive.
            seq_len: T.

        Returns:
            logits (B, num_outputs) and attention A (B*T, 1, h, w).
        """
        bt, c, h, w = feat.shape
        b = bt // seq_len
        x = F.relu(self.bn(self.conv(feat)))                     # (B*T, C, h, w)
        s = self.attention_s_conv(x).view(b, seq_len, h * w)     # (B, T, hw)
        s = self.attention_t_conv(s.transpose(1, 2))             # (B, hw, T)
        att = torch.sigmoid(s).transpose(1, 2).reshape(bt, 1, h, w)
        pooled = _weighted_spatial_mean(feat, att).view(b, seq_len, c).mean(1)  # (B, C)
        return self.classifier(F.relu(pooled)), att


class AttributeRecogHead(nn.Module):
    """One attribute in "mce" mode: a 1x1 attention convolution and a softmax classifier.

    A parameter container: ``AttributeStreamMCE`` applies the layers of all its attributes in
    one batched pass.
    """

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.attention_conv = nn.Conv2d(in_channels, 1, 1)
        self.classifier = nn.Linear(in_channels, num_classes)


class AttributeStreamMCE(nn.Module):
    """One attribute group in "mce" mode: one attention map and one classifier per attribute.

    Interpretation of the original's "mce" key list (reference/*_mce.txt), which is all we
    have of it: a shared 1x1 conv C->C/2 + BN (+ ReLU) reduces the detached backbone map; each
    attribute k has a 1x1 ``attention_conv`` whose sigmoid is a spatial map a_k per frame (no
    temporal convolution exists in that list); the attribute's feature is the a_k-attended
    reduced map averaged over space and time, and its ``classifier`` gives the logits. The
    group's map for the re-ID fusion combines the a_k with the model's learnable
    ``attention_fusion`` weights (see ``VideoBaseline``).

    Args:
        in_channels: C, channels of the backbone map.
        class_counts: number of classes of each attribute of the group.
    """

    def __init__(self, in_channels: int, class_counts: list[int]) -> None:
        super().__init__()
        mid = in_channels // 2
        self.conv = nn.Conv2d(in_channels, mid, 1)
        self.bn = nn.BatchNorm2d(mid)
        self.attr_recog_modules = nn.ModuleList(AttributeRecogHead(mid, n) for n in class_counts)

    def forward(self, feat: torch.Tensor,
                seq_len: int) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Args:
            feat: (B*T, C, h, w) detached backbone map, frames of a clip consecutive.
            seq_len: T.

        Returns:
            list of logits (B, n_k), one per attribute, and the maps a (B*T, K, h, w).
        """
        bt = feat.shape[0]
        b = bt // seq_len
        x = F.relu(self.bn(self.conv(feat)))                     # (B*T, C/2, h, w)
        heads = self.attr_recog_modules
        # the K 1x1 attention convolutions as one convolution with K output channels
        weight = torch.cat([m.attention_conv.weight for m in heads])    # (K, C/2, 1, 1)
        bias = torch.cat([m.attention_conv.bias for m in heads])        # (K,)
        att = torch.sigmoid(F.conv2d(x, weight, bias))                   # (B*T, K, h, w)
        pooled = _weighted_spatial_mean(x, att)                          # (B*T, C/2, K)
        pooled = pooled.view(b, seq_len, *pooled.shape[1:]).mean(1)      # (B, C/2, K)
        logits = [m.classifier(pooled[:, :, k]) for k, m in enumerate(heads)]
        return logits, att
