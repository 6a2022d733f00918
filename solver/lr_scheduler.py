"""Warmup multi-step lr schedule, stepped once per epoch (as the original does)."""

from __future__ import annotations

import re
import warnings
from bisect import bisect_right
from collections.abc import Sequence

import torch
from torch.optim.lr_scheduler import LRScheduler

WARMUP_METHODS = ("linear", "constant")
_ORDER_WARNING = re.escape("Detected call of `lr_scheduler.step()` before `optimizer.step()`")


class WarmupMultiStepLR(LRScheduler):
    """Multi-step decay with a warmup, in epochs.

    Epoch e (1-based) trains with ``base_lr * factor(e)``::

        factor(e) = w(e) * gamma ** bisect_right(milestones, e)
        w(e) = warmup_factor * (1 - e / warmup_iters) + e / warmup_iters   ("linear")
             = warmup_factor                                               ("constant")
        while e < warmup_iters, else w(e) = 1.

    How to call it (as the engine does): build it before training (``last_epoch == 0`` then,
    and the optimizer holds ``base_lr * factor(0)``), and call ``scheduler.step()`` once at the
    START of each epoch, before its first iteration, so that after the e-th call
    ``last_epoch == e`` and the optimizer holds the lr of epoch e. To resume, load the
    optimizer's and this scheduler's state dicts (``state_dict``/``load_state_dict``) and keep
    calling ``step()`` at the start of each following epoch; an epoch interrupted midway
    continues without a step. Any number of parameter groups is scaled alike.

    Args:
        optimizer: the wrapped optimizer.
        milestones: strictly increasing epochs at which the lr is multiplied by ``gamma``.
        gamma: decay factor (> 0).
        warmup_factor: lr factor at epoch 0 (> 0).
        warmup_iters: warmup length in epochs (>= 0; 0 = no warmup).
        warmup_method: "linear" or "constant".
        last_epoch: index of the last epoch when resuming by hand (-1: start).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, milestones: Sequence[int],
                 gamma: float = 0.1, warmup_factor: float = 1.0 / 3, warmup_iters: int = 500,
                 warmup_method: str = "linear", last_epoch: int = -1):
        milestones = [int(m) for m in milestones]
        if any(b <= a for a, b in zip(milestones, milestones[1:])):
            raise ValueError(f"milestones must be strictly increasing, got {milestones}")
        if warmup_method not in WARMUP_METHODS:
            raise ValueError(f"warmup_method must be one of {WARMUP_METHODS}, "
                             f"got {warmup_method!r}")
        if gamma <= 0:
            raise ValueError(f"gamma must be > 0, got {gamma}")
        if warmup_factor <= 0:
            raise ValueError(f"warmup_factor must be > 0, got {warmup_factor}")
        if warmup_iters < 0:
            raise ValueError(f"warmup_iters must be >= 0, got {warmup_iters}")
        self.milestones = milestones
        self.gamma = gamma
        self.warmup_factor = warmup_factor
        self.warmup_iters = warmup_iters
        self.warmup_method = warmup_method
        super().__init__(optimizer, last_epoch)

    def lr_factor(self, epoch: int) -> float:
        """The factor of the base lr used to train epoch ``epoch`` (1-based)."""
        warmup = 1.0
        if epoch < self.warmup_iters:
            if self.warmup_method == "constant":
                warmup = self.warmup_factor
            else:
                alpha = epoch / self.warmup_iters
                warmup = self.warmup_factor * (1 - alpha) + alpha
        return warmup * self.gamma ** bisect_right(self.milestones, epoch)

    def get_lr(self) -> list[float]:
        """Learning rates of every parameter group at ``self.last_epoch`` (closed form)."""
        factor = self.lr_factor(self.last_epoch)
        return [base_lr * factor for base_lr in self.base_lrs]

    _get_closed_form_lr = get_lr

    def step(self, epoch: int | None = None) -> None:
        """Move to the next epoch (call it at the start of the epoch, see the class doc)."""
        # Stepped at the START of each epoch, as the original does: the first call comes before
        # any optimizer.step(), which torch's call-order check would report as a mistake.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_ORDER_WARNING)
            super().step(epoch)
