"""Attribute recognition losses and the per-group attribute vectors that AITL compares."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

ATTR_MODES = ("bce", "mce")


def check_attr_lens(attr_lens: Sequence[Sequence[int]]) -> None:
    """Raise a ValueError unless ``attr_lens`` is two groups of positive class counts."""
    if len(attr_lens) != 2 or not all(len(g) and all(int(n) > 0 for n in g) for g in attr_lens):
        raise ValueError("attr_lens must hold two non-empty lists of class counts (ID-irrelevant "
                         f"and ID-relevant attributes), got {attr_lens!r}")


def attribute_group_vectors(attr_logits: Sequence[torch.Tensor], attr_mode: str,
                            attr_lens: Sequence[Sequence[int]]) -> list[torch.Tensor]:
    """The two attribute-logit vectors per sample that AITL compares (ID-irrelevant, ID-relevant).

    Args:
        attr_logits: model output; "bce": [(B, sum(attr_lens[0])), (B, sum(attr_lens[1]))];
            "mce": one (B, n_classes) tensor per attribute in CSV order.
        attr_mode: "bce" or "mce".
        attr_lens: class counts of the attributes of each group.

    Returns:
        [(B, sum(attr_lens[0])), (B, sum(attr_lens[1]))]; in "mce" mode the concatenation of
        the group's per-attribute logits.
    """
    widths = [[int(n) for n in group] for group in attr_lens]
    if attr_mode == "bce":
        expected = [sum(group) for group in widths]
        got = [t.shape[1] for t in attr_logits]
        if got != expected:
            raise ValueError(f"'bce' attribute logits must have widths {expected}, got {got}")
        return list(attr_logits)
    expected = widths[0] + widths[1]
    got = [t.shape[1] for t in attr_logits]
    if got != expected:
        raise ValueError(f"'mce' attribute logits must have widths {expected} (one tensor per "
                         f"attribute), got {got}")
    n1 = len(widths[0])
    return [torch.cat(list(attr_logits[:n1]), 1), torch.cat(list(attr_logits[n1:]), 1)]


def attribute_loss(attr_logits: Sequence[torch.Tensor], targets: torch.Tensor | Sequence,
                   attr_mode: str) -> torch.Tensor:
    """Attribute recognition loss, in float32.

    Args:
        attr_logits: as in :func:`attribute_group_vectors`.
        targets: "bce": [(B, A_1), (B, A_2)] float concatenated one-hot vectors per group;
            "mce": (B, n_attr) long class indices.
        attr_mode: "bce" (BCEWithLogits per group, mean over elements, summed over the groups)
            or "mce" (cross entropy per attribute, averaged over the attributes).

    Returns:
        Scalar loss.
    """
    if attr_mode == "bce":
        return sum(F.binary_cross_entropy_with_logits(logits.float(), target.float())
                   for logits, target in zip(attr_logits, targets, strict=True))
    if targets.shape[1] != len(attr_logits):
        raise ValueError(f"'mce' targets have {targets.shape[1]} attributes, the model gives "
                         f"logits for {len(attr_logits)}")
    return torch.stack([F.cross_entropy(logits.float(), targets[:, k])
                        for k, logits in enumerate(attr_logits)]).mean()
