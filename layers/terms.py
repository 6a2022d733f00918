"""The extra loss term registry: MODEL.EXTRA_LOSSES -> factories of terms added to the total.

A factory is called ``factory(num_classes, feat_dim, attr_lens)`` (the training identities;
the model's feature dimension, None when ``make_loss`` was not given it; the class counts per
attribute of the two groups, None without attribute terms) and returns an ``nn.Module`` whose
forward is ``term(outputs, pids, attrs) -> scalar tensor``: ``outputs`` is the model's train
output ``(cls_score, global_feat, attr_logits)``, ``pids`` and ``attrs`` the batch's labels,
as :class:`layers.ReidCriterion` gets them. A class with that constructor is a factory. The
criterion adds each term of MODEL.EXTRA_LOSSES, times its weight (MODEL.EXTRA_LOSS_WEIGHTS,
1.0 each when empty), as ``loss_<name>`` to its dict and to ``total``.

No term is built in: the paper's loss is fixed by its own keys. A plugin registers one with a
line, e.g. ``@LOSS_TERMS.register("my_term")`` above the class.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from utils.registry import Registry

__all__ = ["BUILTIN_TERM_KEYS", "LOSS_TERMS", "LossTermFactory", "term_key"]

LossTermFactory = Callable[..., nn.Module]

LOSS_TERMS: Registry[LossTermFactory] = Registry("MODEL.EXTRA_LOSSES", "extra loss term")

# The dict keys of the criterion's own terms; an extra term may not take one of them.
BUILTIN_TERM_KEYS = ("loss_id", "loss_triplet", "loss_aitl_unrelated", "loss_aitl_related",
                     "loss_attr", "loss_center")


def term_key(name: str) -> str:
    """The criterion's dict key of the extra term ``name``: ``loss_<name>``."""
    return f"loss_{name}"
