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
