"""Losses: identity, batch-hard triplet, AITL, attribute, center (docs/behaviour.md#losses), and
the registry of extra loss terms (``LOSS_TERMS``, MODEL.EXTRA_LOSSES)."""

from layers.aitl import aitl_loss, triplet_and_aitl_losses
from layers.attribute import attribute_group_vectors, attribute_loss
from layers.build import ReidCriterion, loss_formula, make_loss
from layers.center import CenterLoss
from layers.cross_entropy import CrossEntropy, CrossEntropyLabelSmooth
from layers.distance import pairwise_distance
from layers.terms import LOSS_TERMS
from layers.triplet import batch_hard_triplet_loss

__all__ = [
    "LOSS_TERMS", "CenterLoss", "CrossEntropy", "CrossEntropyLabelSmooth", "ReidCriterion",
    "aitl_loss", "attribute_group_vectors", "attribute_loss", "batch_hard_triplet_loss",
    "loss_formula", "make_loss", "pairwise_distance", "triplet_and_aitl_losses",
]
