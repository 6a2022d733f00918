"""Optimizers and the lr schedule from the config (docs/behaviour.md#optimizer)."""

from __future__ import annotations

import difflib
import inspect

import torch
import torch.nn as nn
from yacs.config import CfgNode

from config.validate import available_optimizers
from solver.lr_scheduler import WarmupMultiStepLR
from utils.errors import UserError

# build_optimizer's arguments and the config keys they come from (make_optimizer).
_SETTING_KEYS = {"base_lr": ("SOLVER.BASE_LR",), "bias_lr_factor": ("SOLVER.BIAS_LR_FACTOR",),
                 "weight_decay": ("SOLVER.WEIGHT_DECAY",),
                 "weight_decay_bias": ("SOLVER.WEIGHT_DECAY_BIAS",),
                 "weight_decays": ("SOLVER.WEIGHT_DECAY", "SOLVER.WEIGHT_DECAY_BIAS"),
                 "momentum": ("SOLVER.MOMENTUM",)}
# Words of torch.optim's constructor messages and the argument each is about.
_TORCH_WORDS = (("learning rate", "base_lr"), ("weight_decay", "weight_decay"),
                ("weight decay", "weight_decay"), ("momentum", "momentum"))


class OptimizerSettingError(ValueError):
    """A setting that the optimizer cannot take; ``setting`` is the :func:`build_optimizer`
    argument at fault (None when torch's message names none of them)."""

    def __init__(self, setting: str | None, message: str) -> None:
        super().__init__(message)
        self.setting = setting


def build_optimizer(model: nn.Module, name: str, base_lr: float, weight_decay: float,
                    bias_lr_factor: float = 1.0, weight_decay_bias: float = 0.0,
                    momentum: float = 0.9) -> torch.optim.Optimizer:
    """A torch.optim optimizer over the trainable parameters of ``model``.

    Parameters whose name contains "bias" get ``base_lr * bias_lr_factor`` and
    ``weight_decay_bias``; the others ``base_lr`` and ``weight_decay``. The original makes one
    parameter group per parameter; the update of these element-wise optimizers only depends on
    each parameter's (lr, weight_decay), so parameters sharing them form one group (at most
    two groups). Optimizers with a fused kernel (Adam, AdamW, SGD, Adagrad: one kernel for all
    the parameters of a group, on CPU and CUDA; with a grad scaler, the inf check needs no host
    sync) use it: the same update to float rounding, faster than ``foreach`` (README,
    Performance). The others keep torch's default (``foreach`` kernels on
    CUDA, per-parameter loops on a CPU, where ``foreach`` is slower).

    Args:
        model: the module to train (frozen parameters, e.g. the BNNeck bias, are skipped).
        name: a torch.optim class name (see :func:`available_optimizers`).
        base_lr, weight_decay: settings of the non-bias parameters.
        bias_lr_factor, weight_decay_bias: settings of the bias parameters.
        momentum: momentum (SGD only).

    Raises:
        ValueError: unknown or unsuitable optimizer name (the message lists the valid ones).
        OptimizerSettingError: a setting the optimizer cannot take (a negative learning rate,
            weight decay or momentum, weight decay for an optimizer without it); its
            ``setting`` names the argument.
    """
    valid = available_optimizers()
    if name not in valid:
        close = difflib.get_close_matches(name, valid, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown optimizer {name!r}.{hint} Valid: {', '.join(valid)}")
    # torch checks only the constructor's defaults, not the values of each parameter group
    for setting, value in (("base_lr", base_lr), ("bias_lr_factor", bias_lr_factor),
                           ("weight_decay", weight_decay),
                           ("weight_decay_bias", weight_decay_bias), ("momentum", momentum)):
        if not value >= 0:
            raise OptimizerSettingError(setting, f"{setting} must be >= 0, got {value}")
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for param_name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if "bias" in param_name:
            key = (base_lr * bias_lr_factor, weight_decay_bias)
        else:
            key = (base_lr, weight_decay)
        groups.setdefault(key, []).append(param)
    if not groups:
        raise ValueError("the model has no trainable parameters")
    cls = getattr(torch.optim, name)
    accepted = inspect.signature(cls.__init__).parameters
    has_wd = "weight_decay" in accepted
    if not has_wd and any(wd for _, wd in groups):
        raise OptimizerSettingError(
            "weight_decays", f"optimizer {name!r} has no weight decay; set weight_decay and "
            "weight_decay_bias (SOLVER.WEIGHT_DECAY, SOLVER.WEIGHT_DECAY_BIAS) to 0")
    param_groups = []
    for (lr, wd), params in groups.items():
        group = {"params": params, "lr": lr}
        if has_wd:
            group["weight_decay"] = wd
        param_groups.append(group)
    kwargs = {"lr": base_lr}
    if name == "SGD":
        kwargs["momentum"] = momentum
    if "fused" in accepted:
        kwargs["fused"] = True
    try:
        return cls(param_groups, **kwargs)
    except ValueError as e:   # torch's own checks ("Invalid learning rate: -1.0")
        text = str(e).lower()
        setting = next((arg for word, arg in _TORCH_WORDS if word in text), None)
        raise OptimizerSettingError(setting, str(e)) from None


def make_optimizer(cfg: CfgNode, model: nn.Module) -> torch.optim.Optimizer:
    """The optimizer of SOLVER.OPTIMIZER_NAME with the SOLVER lr/weight-decay settings.

    Raises:
        UserError: naming the key at fault (SOLVER.OPTIMIZER_NAME for an unknown name,
            SOLVER.BASE_LR for a negative learning rate, ...) and its value.
    """
    s = cfg.SOLVER
    try:
        return build_optimizer(model, s.OPTIMIZER_NAME, s.BASE_LR, s.WEIGHT_DECAY,
                               bias_lr_factor=s.BIAS_LR_FACTOR,
                               weight_decay_bias=s.WEIGHT_DECAY_BIAS, momentum=s.MOMENTUM)
    except OptimizerSettingError as e:
        keys = _SETTING_KEYS.get(e.setting) or tuple(_SETTING_KEYS.values())
        values = ", ".join(f"{key} {_get(cfg, key)!r}" for key in keys)
        raise UserError(f"{values}: refused by torch.optim.{s.OPTIMIZER_NAME} ({e}). Fix "
                        f"{' or '.join(keys)}.") from None
    except ValueError as e:
        raise UserError(f"SOLVER.OPTIMIZER_NAME {s.OPTIMIZER_NAME!r}: {e}") from None


class CenterSGD(torch.optim.SGD):
    """SGD over the center-loss centres whose update ignores the loss weight (as in
    reid-strong-baseline): every :meth:`step` first multiplies the centres' gradients by
    ``1 / max(loss_weight, 1e-12)``, then takes the plain SGD step.

    The gradients are rescaled in place, after any ``GradScaler.unscale_`` (and any
    cross-process averaging) the caller does before ``scaler.step(optimizer)``; a step that the
    scaler skips leaves the centres unchanged, as a plain SGD's would.

    Args:
        params: the centres (parameters or parameter groups).
        lr: learning rate (SOLVER.CENTER_LR).
        loss_weight: the weight of the center loss in the total (SOLVER.CENTER_LOSS_WEIGHT).
        fused: SGD's fused kernel (as for the model's optimizer: with a grad scaler its step
            needs no host sync).
    """

    def __init__(self, params, lr: float, loss_weight: float, fused: bool | None = True):
        super().__init__(params, lr=lr, fused=fused)
        # in ``defaults`` (pickled with the optimizer), not in the parameter groups (the state
        # dict, checkpoints included, stays that of a plain SGD)
        self.defaults["loss_weight"] = float(loss_weight)

    @property
    def loss_weight(self) -> float:
        """The center-loss weight that the step undoes."""
        return self.defaults["loss_weight"]

    def step(self, closure=None):
        """Rescale the gradients by ``1 / loss_weight``, then the SGD step (no closure)."""
        if closure is not None:
            raise ValueError("CenterSGD.step takes no closure: it rescales the gradients "
                             "that are there before the step")
        grads = [p.grad for group in self.param_groups for p in group["params"]
                 if p.grad is not None]
        if grads:
            torch._foreach_mul_(grads, 1.0 / max(self.loss_weight, 1e-12))
        return super().step()


def make_center_optimizer(cfg: CfgNode, criterion: nn.Module) -> CenterSGD | None:
    """The :class:`CenterSGD` of the center-loss centres (lr SOLVER.CENTER_LR; it undoes the
    criterion's ``center_weight``, SOLVER.CENTER_LOSS_WEIGHT for a criterion without one), or
    None without a center loss.

    Raises:
        UserError: SOLVER.CENTER_LR is not a positive number.
    """
    center = getattr(criterion, "center_loss", None)
    if center is None:
        return None
    if not cfg.SOLVER.CENTER_LR > 0:
        raise UserError(f"Invalid value {cfg.SOLVER.CENTER_LR!r} for SOLVER.CENTER_LR (the "
                        "learning rate of the center loss centres); it must be > 0.")
    weight = getattr(criterion, "center_weight", cfg.SOLVER.CENTER_LOSS_WEIGHT)
    return CenterSGD(center.parameters(), lr=cfg.SOLVER.CENTER_LR, loss_weight=weight)


# The schedule's arguments (in the order their messages are told apart) and their keys.
_SCHEDULE_KEYS = (("warmup_method", "SOLVER.WARMUP_METHOD"),
                  ("warmup_factor", "SOLVER.WARMUP_FACTOR"),
                  ("warmup_iters", "SOLVER.WARMUP_ITERS"), ("gamma", "SOLVER.GAMMA"),
                  ("milestones", "SOLVER.STEPS"))


def make_scheduler(cfg: CfgNode, optimizer: torch.optim.Optimizer) -> WarmupMultiStepLR:
    """The per-epoch :class:`WarmupMultiStepLR` of the SOLVER settings.

    Raises:
        UserError: naming the key of the setting the schedule refuses, and its value.
    """
    s = cfg.SOLVER
    try:
        return WarmupMultiStepLR(optimizer, s.STEPS, s.GAMMA, s.WARMUP_FACTOR, s.WARMUP_ITERS,
                                 s.WARMUP_METHOD)
    except ValueError as e:
        key = next((k for arg, k in _SCHEDULE_KEYS if str(e).startswith(arg)), None)
        if key is None:
            raise UserError(f"SOLVER.STEPS/GAMMA/WARMUP_*: {e}; fix these keys.") from None
        raise UserError(f"Invalid value {_get(cfg, key)!r} for {key}: {e}.") from None


def _get(cfg: CfgNode, dotted: str):
    node = cfg
    for part in dotted.split("."):
        node = node[part]
    return node
