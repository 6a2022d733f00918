"""Optimizers and learning-rate schedules (docs/behaviour.md#optimisation-and-training-loop)."""

from solver.build import (
    CenterSGD,
    available_optimizers,
    build_optimizer,
    make_center_optimizer,
    make_optimizer,
    make_scheduler,
)
from solver.lr_scheduler import WarmupMultiStepLR

__all__ = [
    "CenterSGD", "WarmupMultiStepLR", "available_optimizers", "build_optimizer",
    "make_center_optimizer", "make_optimizer", "make_scheduler",
]
