"""The training criterion (docs/behaviour.md#total) and its config adapter ``make_loss``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn
from yacs.config import CfgNode

from config import attributes_on
from layers.aitl import triplet_and_aitl_losses
from layers.attribute import (
    ATTR_MODES,
    attribute_group_vectors,
    attribute_loss,
    check_attr_lens,
)
from layers.center import CenterLoss
from layers.cross_entropy import CrossEntropy, CrossEntropyLabelSmooth
from layers.distance import check_metric
from layers.terms import BUILTIN_TERM_KEYS, LOSS_TERMS, term_key
from utils.attribute_schemas import BUILTIN_SCHEMAS
from utils.errors import UserError

# With attributes, the triplet and the two AITL terms are each divided by this number.
SHARED_DIVISOR = 3


class ReidCriterion(nn.Module):
    """Identity, batch-hard triplet, AITL, attribute, (optional) center and extra losses.

    Returns a dict of weighted terms and their sum ``total``. With attributes:
    ``total = id + (triplet + aitl_unrelated + aitl_related) / 3 + attr`` (the dict holds
    ``triplet / 3`` etc.); without: ``total = id + triplet``; ``loss_center`` (weighted) is
    added when the center loss is on, then each extra term as ``loss_<name>`` (weighted). The
    triplet and both AITL terms share one feature distance matrix. :attr:`terms` lists the
    active terms and their weights, :meth:`formula` writes the sum.

    Args:
        num_classes: number of training identities.
        margin: triplet margin (SOLVER.MARGIN).
        metric: feature distance, "cosine" or "euclid" (DISTANCE).
        label_smooth: label-smoothed (epsilon 0.1) identity loss (IF_LABELSMOOTH "on").
        attr_mode: "bce", "mce" (DATASETS.ATTRIBUTE_LOSS) or None for no attribute terms.
        attr_lens: class counts per attribute of the two groups; required with ``attr_mode``.
        aitl_margin: AITL margin (SOLVER.AITL_MARGIN).
        aitl_exclude_self: leave the anchor out of the AITL positives (SOLVER.AITL_EXCLUDE_SELF).
        use_center: add the center loss on the pre-BN global feature.
        feat_dim: feature dimension, required with ``use_center``.
        center_weight: weight of the center loss (SOLVER.CENTER_LOSS_WEIGHT).
        extra_terms: ``(name, module, weight)`` triples, added in their order after the
            paper's terms: ``module(outputs, pids, attrs)`` returns a scalar tensor, the dict
            holds ``weight * term`` (float32) as ``loss_<name>`` (MODEL.EXTRA_LOSSES,
            :data:`layers.terms.LOSS_TERMS`). The modules are submodules (moved with
            ``.to()``, saved in ``state_dict``); the optimizer does not train their parameters.
    """

    def __init__(self, num_classes: int, margin: float = 0.3, metric: str = "cosine",
                 label_smooth: bool = True, attr_mode: str | None = None,
                 attr_lens: Sequence[Sequence[int]] | None = None, aitl_margin: float = 0.0,
                 aitl_exclude_self: bool = False, use_center: bool = False,
                 feat_dim: int | None = None, center_weight: float = 0.0005,
                 extra_terms: Sequence[tuple[str, nn.Module, float]] = ()):
        super().__init__()
        check_metric(metric)
        if attr_mode is not None:
            if attr_mode not in ATTR_MODES:
                raise ValueError(f"attr_mode must be one of {ATTR_MODES} or None, "
                                 f"got {attr_mode!r}")
            if attr_lens is None:
                raise ValueError(f"attr_mode {attr_mode!r} needs attr_lens")
            check_attr_lens(attr_lens)
        if use_center and not feat_dim:
            raise ValueError("use_center needs feat_dim (the model's feature dimension)")
        self.margin = margin
        self.metric = metric
        self.attr_mode = attr_mode
        self.attr_lens = [list(g) for g in attr_lens] if attr_mode is not None else None
        self.aitl_margin = aitl_margin
        self.aitl_exclude_self = aitl_exclude_self
        self.id_loss = CrossEntropyLabelSmooth(num_classes) if label_smooth else CrossEntropy()
        self.center_weight = center_weight
        self.center_loss = CenterLoss(num_classes, feat_dim) if use_center else None
        self.extra_keys: list[str] = []
        self.extra_weights: list[float] = []
        modules = []
        for name, module, weight in extra_terms:
            key = term_key(name)
            if key in BUILTIN_TERM_KEYS or key in self.extra_keys:
                taken = "a term of the paper's loss" if key in BUILTIN_TERM_KEYS else \
                    "another extra term"
                raise ValueError(f"the extra loss term {name!r} would be logged as {key!r}, "
                                 f"the key of {taken}; give it another name")
            if not isinstance(module, nn.Module):
                raise TypeError(f"the extra loss term {name!r} must be an nn.Module, got "
                                f"{type(module).__name__}")
            if not weight >= 0:
                raise ValueError(f"the weight of the extra loss term {name!r} must be >= 0, "
                                 f"got {weight!r}")
            self.extra_keys.append(key)
            self.extra_weights.append(float(weight))
            modules.append(module)
        self.extra_modules = nn.ModuleList(modules)

    def forward(self, outputs: Sequence, pids: torch.Tensor,
                attrs: torch.Tensor | Sequence[torch.Tensor] | None = None,
                ) -> dict[str, torch.Tensor]:
        """Args:
            outputs: the model's train forward ``(cls_score (B, C), global_feat (B, D),
                attr_logits)`` (attr_logits as in :func:`layers.attribute_group_vectors`;
                ignored without ``attr_mode``).
            pids: (B,) long identity labels.
            attrs: encoded attribute targets ("bce": list of 2 (B, A_k) float tensors; "mce":
                (B, n_attr) long); ignored without ``attr_mode``.

        Returns:
            ``loss_id``, ``loss_triplet`` [, ``loss_aitl_unrelated``, ``loss_aitl_related``,
            ``loss_attr``] [, ``loss_center``] [, ``loss_<name>`` of each extra term]
            (weighted) and ``total``.
        """
        cls_score, global_feat, attr_logits = outputs
        losses = {"loss_id": self.id_loss(cls_score, pids)}
        if self.attr_mode is None:
            triplet, _ = triplet_and_aitl_losses(global_feat, pids, [], self.metric, self.margin)
            losses["loss_triplet"] = triplet
        else:
            if attr_logits is None:
                raise ValueError("the criterion has attribute terms but the model returned no "
                                 "attribute logits (is ATTR_RECOG_ON False for the model?)")
            groups = attribute_group_vectors(attr_logits, self.attr_mode, self.attr_lens)
            triplet, (unrelated, related) = triplet_and_aitl_losses(
                global_feat, pids, groups, self.metric, self.margin, self.aitl_margin,
                self.aitl_exclude_self)
            losses["loss_triplet"] = triplet / SHARED_DIVISOR
            losses["loss_aitl_unrelated"] = unrelated / SHARED_DIVISOR
            losses["loss_aitl_related"] = related / SHARED_DIVISOR
            losses["loss_attr"] = attribute_loss(attr_logits, attrs, self.attr_mode)
        if self.center_loss is not None:
            losses["loss_center"] = self.center_weight * self.center_loss(global_feat, pids)
        for key, module, weight in zip(self.extra_keys, self.extra_modules, self.extra_weights):
            value = module(outputs, pids, attrs)
            if not isinstance(value, torch.Tensor) or value.dim() != 0:
                raise ValueError(f"the extra loss term {key!r} must return a scalar tensor, got "
                                 f"{getattr(value, 'shape', type(value).__name__)}")
            losses[key] = weight * value.float()
        losses["total"] = sum(losses.values())
        return losses

    @property
    def terms(self) -> list[tuple[str, float]]:
        """The active terms as ``(key, weight)``, in the order of :meth:`forward`'s dict.

        ``total`` is the sum of ``weight * term`` (the dict holds the weighted terms), e.g. with
        attributes ``[("loss_id", 1.0), ("loss_triplet", 1/3), ("loss_aitl_unrelated", 1/3),
        ("loss_aitl_related", 1/3), ("loss_attr", 1.0)]``, plus ``("loss_center",
        center_weight)`` with the center loss, then ``("loss_<name>", weight)`` of each extra
        term.
        """
        terms = [("loss_id", 1.0)]
        if self.attr_mode is None:
            terms.append(("loss_triplet", 1.0))
        else:
            shared = 1.0 / SHARED_DIVISOR
            terms += [("loss_triplet", shared), ("loss_aitl_unrelated", shared),
                      ("loss_aitl_related", shared), ("loss_attr", 1.0)]
        if self.center_loss is not None:
            terms.append(("loss_center", float(self.center_weight)))
        terms += zip(self.extra_keys, self.extra_weights)
        return terms

    def formula(self, labels: Mapping[str, str] | None = None) -> str:
        """The total as text, from :attr:`terms` (see :func:`loss_formula`), e.g.
        ``"total = loss_id + (loss_triplet + loss_aitl_unrelated + loss_aitl_related) / 3 +
        loss_attr"``; ``labels`` renames terms (``{"loss_id": "ID"}``)."""
        return loss_formula(self.terms, labels)

    def extra_repr(self) -> str:
        return (f"metric={self.metric!r}, margin={self.margin}, attr_mode={self.attr_mode!r}, "
                f"aitl_margin={self.aitl_margin}, aitl_exclude_self={self.aitl_exclude_self}")


def loss_formula(terms: Sequence[tuple[str, float]],
                 labels: Mapping[str, str] | None = None) -> str:
    """``"total = ..."``: the weighted sum of ``(name, weight)`` terms as text.

    Neighbouring terms of one weight are grouped: weight 1 as ``a + b``, a weight w that a
    short decimal writes exactly (0.0005) as ``w * (a + b)``, 1/n (n an integer > 1) as
    ``(a + b) / n``, any other weight as ``w * (a + b)`` with 4 significant digits.

    Args:
        terms: ``(name, weight)`` pairs (:attr:`ReidCriterion.terms`).
        labels: the text of a name (a name without a label stands for itself; a label that
            is a sum, ``"BCE1 + BCE2"``, is put in parentheses where it is weighted).
    """
    labels = labels or {}
    runs: list[tuple[float, list[str]]] = []
    for name, weight in terms:
        label = labels.get(name, name)
        if runs and runs[-1][0] == weight:
            runs[-1][1].append(label)
        else:
            runs.append((weight, [label]))
    parts = []
    for weight, names in runs:
        inner = " + ".join(names)
        if weight == 1:
            parts.append(inner)
            continue
        grouped = f"({inner})" if " + " in inner else inner
        inverse = 1 / weight if 1e-12 < weight < 1 else 0.0
        if float(f"{weight:g}") == weight:
            parts.append(f"{weight:g} * {grouped}")
        elif abs(inverse - round(inverse)) < 1e-9 * inverse:
            parts.append(f"{grouped} / {round(inverse)}")
        else:
            parts.append(f"{weight:.4g} * {grouped}")
    return "total = " + (" + ".join(parts) or "0")


_FROM_DATASET_NAME: Any = object()


def make_loss(cfg: CfgNode, num_classes: int,
              attr_lens: Sequence[Sequence[int]] | None = _FROM_DATASET_NAME,
              feat_dim: int | None = None) -> ReidCriterion:
    """The training criterion of a config.

    Attribute terms are on when ``cfg.ATTR_RECOG_ON`` and the dataset has attributes. The
    center loss is on only with SOLVER.USE_CENTER_LOSS True (the original never trains it,
    even though the paper's config sets METRIC_LOSS_TYPE "triplet_center" and IF_WITH_CENTER
    "yes"); it also needs IF_WITH_CENTER "yes" and "center" in METRIC_LOSS_TYPE; triplet stays.
    MODEL.EXTRA_LOSSES adds the registered terms it names (:data:`layers.terms.LOSS_TERMS`,
    each built as ``factory(num_classes, feat_dim, attr_lens)`` with the criterion's
    ``attr_lens``, None without attribute terms), weighted by MODEL.EXTRA_LOSS_WEIGHTS (1.0
    each when empty); the default ``[]`` adds none.

    Args:
        cfg: config.
        num_classes: number of training identities.
        attr_lens: the dataset's class counts per attribute of the two groups
            (``dataset.attr_lens``), or None for no attribute terms. Omitted: the built-in
            schema of DATASETS.NAME (MARS, Duke: :data:`utils.attribute_schemas.BUILTIN_SCHEMAS`,
            constants; no file is read); any other dataset gets no attribute terms, the folder
            dataset included: pass its ``dataset.attr_lens`` (from its attributes.yml).
        feat_dim: the model's feature dimension (``model.feat_dim``), needed by the center loss
            (and passed to the extra terms' factories).

    Raises:
        UserError: the center loss keys disagree, or an extra term is not registered.
    """
    use_center = bool(cfg.SOLVER.USE_CENTER_LOSS)
    if use_center:
        if cfg.MODEL.IF_WITH_CENTER != "yes" or "center" not in cfg.MODEL.METRIC_LOSS_TYPE:
            raise UserError(
                "SOLVER.USE_CENTER_LOSS True needs MODEL.IF_WITH_CENTER 'yes' and "
                "MODEL.METRIC_LOSS_TYPE 'triplet_center' (got "
                f"{cfg.MODEL.IF_WITH_CENTER!r} and {cfg.MODEL.METRIC_LOSS_TYPE!r}); set them, "
                "or set SOLVER.USE_CENTER_LOSS False.")
        if not feat_dim:
            raise UserError("SOLVER.USE_CENTER_LOSS True: make_loss needs feat_dim (pass "
                            "model.feat_dim).")
    if attr_lens is _FROM_DATASET_NAME:
        schema = BUILTIN_SCHEMAS.get(cfg.DATASETS.NAME)
        attr_lens = schema.attr_lens if schema is not None else None
    with_attr = attributes_on(cfg, attr_lens)
    term_attr_lens = attr_lens if with_attr else None
    names = list(cfg.MODEL.EXTRA_LOSSES)
    weights = [float(w) for w in cfg.MODEL.EXTRA_LOSS_WEIGHTS] or [1.0] * len(names)
    if len(weights) != len(names):
        raise UserError(f"MODEL.EXTRA_LOSS_WEIGHTS {weights!r} (length {len(weights)}) must "
                        f"give one weight per name of MODEL.EXTRA_LOSSES {names!r} (length "
                        f"{len(names)}), or be [] for 1.0 each.")
    extra_terms = [(name, LOSS_TERMS.get(name)(num_classes, feat_dim, term_attr_lens), weight)
                   for name, weight in zip(names, weights)]
    return ReidCriterion(
        num_classes,
        margin=cfg.SOLVER.MARGIN,
        metric=cfg.DISTANCE,
        label_smooth=cfg.MODEL.IF_LABELSMOOTH == "on",
        attr_mode=cfg.DATASETS.ATTRIBUTE_LOSS if with_attr else None,
        attr_lens=term_attr_lens,
        aitl_margin=cfg.SOLVER.AITL_MARGIN,
        aitl_exclude_self=cfg.SOLVER.AITL_EXCLUDE_SELF,
        use_center=use_center,
        feat_dim=feat_dim,
        center_weight=cfg.SOLVER.CENTER_LOSS_WEIGHT,
        extra_terms=extra_terms,
    )
