"""Mixed-precision settings of a run (SPEC §5: torch.amp instead of apex)."""

from __future__ import annotations

import logging

import torch
from yacs.config import CfgNode

from utils.errors import UserError

logger = logging.getLogger("reid.train")


def amp_settings(cfg: CfgNode, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype or None, whether to use a grad scaler) for this config and device.

    SOLVER.FP_16 on a CUDA device gives SOLVER.AMP_DTYPE (float16 with a grad scaler, or
    bfloat16 without); anywhere else training and evaluation run in float32 (one log line).
    """
    if not cfg.SOLVER.FP_16:
        return None, False
    if device.type != "cuda":
        logger.info("SOLVER.FP_16 is on but the device is %s: training in float32.", device.type)
        return None, False
    if cfg.SOLVER.AMP_BACKEND == "apex":
        raise UserError("SOLVER.AMP_BACKEND 'apex': NVIDIA apex removed apex.amp; use "
                        "SOLVER.AMP_BACKEND native (torch.amp, the same O1-style mixed precision).")
    dtype = torch.float16 if cfg.SOLVER.AMP_DTYPE == "float16" else torch.bfloat16
    return dtype, dtype == torch.float16


def configure_backends(device: torch.device, training: bool) -> None:
    """Set the cuDNN autotuner (``torch.backends.cudnn.benchmark``): on to train on CUDA.

    The autotuner times the convolution algorithms the first time it sees an input shape and
    keeps the fastest for that shape. A training run has a single shape (SEQS_PER_BATCH clips
    of SEQ_LEN frames, the last incomplete batch dropped), so it tunes once and every later
    step gets the fastest kernels. The original switches it off: it evaluates one tracklet per
    forward, all its dense clips at once, so the forward shape changes with every tracklet and
    each new shape would be tuned again. Our evaluation packs clips into forwards of
    TEST.CLIPS_PER_BATCH, so the evaluations inside a training run add two or three shapes.
    Evaluation-only runs and other devices leave it off (torch's default). It changes which
    kernels run, not what they compute (results equal to float rounding).

    Args:
        device: the run's device.
        training: whether the run trains (False: evaluation only).
    """
    enabled = device.type == "cuda" and training
    torch.backends.cudnn.benchmark = enabled
    if enabled:
        logger.info("cuDNN autotuner on (torch.backends.cudnn.benchmark): the training shapes "
                    "are fixed.")
