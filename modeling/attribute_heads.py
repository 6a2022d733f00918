"""The two attribute streams (ASTA): attribute logits and spatio-temporal attention maps.

Both streams read the DETACHED backbone map, so attribute losses never reach the backbone
(as in the original); their attention maps stay undetached, so the re-ID losses using them in
the ATTR_TA fusion do train the stream's attention layers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def kaiming_init(conv: nn.Module) -> None:
    """Kaiming normal weight (fan_in, a=0), zero bias: the heads' convolutions (as the original)."""
    nn.init.kaiming_normal_(conv.weight, a=0, mode="fan_in")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


def classifier_init(linear: nn.Linear) -> None:
    """Weight N(0, 0.001), zero bias: every classifier, identity and attribute (as the original)."""
    nn.init.normal_(linear.weight, std=0.001)
    if linear.bias is not None:
        nn.init.zeros_(linear.bias)


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

    def reset_parameters(self) -> None:
        """The original's init: Kaiming normal (fan_in) convolutions (the Conv1d too), bias 0; BN
        weight 1, bias 0; classifier N(0, 0.001), bias 0."""
        for conv in (self.conv, self.attention_s_conv, self.attention_t_conv):
            kaiming_init(conv)
        nn.init.ones_(self.bn.weight)
        nn.init.zeros_(self.bn.bias)
        classifier_init(self.classifier)

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

    As the original's "mce" mode: a shared 1x1 ``conv`` C->C/2 + ``bn`` + ReLU reduces the detached
    backbone map to R; attribute k has a 1x1 ``attention_conv`` whose sigmoid is a spatial map
    a_k per frame; its feature is a_k * R averaged over space, then over the T frames, then
    ReLU, and its ``classifier`` gives the logits. ``fuse_maps`` turns the K maps into the
    group's spatio-temporal attention for the ATTR_TA fusion.

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

    def reset_parameters(self) -> None:
        """The original's init: each ``attention_conv`` Kaiming normal (fan_in), bias 0; each
        classifier N(0, 0.001), bias 0; the shared ``conv``/``bn`` keep PyTorch's defaults."""
        for head in self.attr_recog_modules:
            kaiming_init(head.attention_conv)
            classifier_init(head.classifier)

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
        pooled = F.relu(pooled.view(b, seq_len, *pooled.shape[1:]).mean(1))  # (B, C/2, K)
        logits = [m.classifier(pooled[:, :, k]) for k, m in enumerate(heads)]
        return logits, att

    @staticmethod
    def fuse_maps(att: torch.Tensor, fusion: torch.Tensor, seq_len: int) -> torch.Tensor:
        """The group's attention A for the ATTR_TA fusion (docs/behaviour.md, mce mode, step 3).

        Args:
            att: (B*T, K, h, w) the attributes' maps a_k.
            fusion: (1, K, h, w) the learnable ``attention_fusion`` weights.
            seq_len: T.

        Returns:
            (B*T, 1, h, w): the a_k summed with softmax-over-K weights at every position, then
            a softmax over the T frames of each clip at every position.
        """
        bt, _, h, w = att.shape
        group = (att * fusion.softmax(1)).sum(1)                 # (B*T, h, w)
        group = group.view(bt // seq_len, seq_len, h, w).softmax(1)
        return group.reshape(bt, 1, h, w)
