"""Mixed-precision settings of a run: ``torch.amp`` autocast (the original used NVIDIA apex O1)."""

from __future__ import annotations

import logging

import torch
from yacs.config import CfgNode

from utils.errors import UserError

logger = logging.getLogger("reid.train")


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX tiles, as torch sees it).

    Elsewhere torch emulates bfloat16 on a CPU, which is slower than float32.
    """
    cpu = torch.cpu
    return bool(getattr(cpu, "_is_avx512_bf16_supported", lambda: False)()
                or getattr(cpu, "_is_amx_tile_supported", lambda: False)())


_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": None}


def amp_settings(cfg: CfgNode, device: torch.device,
                 log: bool = False) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype or None, whether to use a grad scaler) for this config and device.

    * ``SOLVER.FP_16 False``: float32 everywhere.
    * CUDA: ``SOLVER.AMP_DTYPE`` (float16 with a grad scaler, or bfloat16 without).
    * CPU: ``SOLVER.CPU_PRECISION``. "auto" is bfloat16 autocast on a CPU with native bf16
      instructions (:func:`cpu_has_native_bf16`; the training step is faster there, see
      the README's Performance section) and float32 elsewhere (emulated
      bfloat16 and CPU float16 are slower than float32). "float16" runs the GPU's path (float16
      autocast with a grad scaler): slow on a CPU, it lets tests exercise the scaler.
    * Other devices: float32.

    Args:
        cfg: the run's config.
        device: the device of this process.
        log: write one log line saying which precision runs and why (the trainer does;
            evaluation runs in the same precision, :func:`evaluation_dtype`).
    """
    dtype, why = _choose(cfg, device)
    if log:
        logger.info("Precision: %s (%s).", "float32" if dtype is None else
                    str(dtype).replace("torch.", "") + " autocast", why)
    return dtype, dtype == torch.float16


def evaluation_dtype(cfg: CfgNode, device: torch.device,
                     log: bool = False) -> torch.dtype | None:
    """The autocast dtype of evaluation and feature extraction (None: float32): the training
    precision of :func:`amp_settings`, on every device. Distances are float32 either way.

    On a CPU with native bfloat16 ("auto") evaluation therefore runs in bfloat16 too: on the
    trained CPU demo (configs/demo.yml, 30 epochs, seeds 999, 1 and 7) bfloat16 extraction gave
    the float32 mAP to 0.06 points and the same rank-1 (tests/test_mixed_precision.py checks 0.2);
    the speed is in the README's Performance section. ``SOLVER.CPU_PRECISION float32`` (or
    ``SOLVER.FP_16 False``) evaluates in float32.

    Args:
        cfg: the run's config.
        device: the device of this process.
        log: write :func:`amp_settings`' log line (evaluation-only runs do).
    """
    return amp_settings(cfg, device, log=log)[0]


def dtype_name(dtype: torch.dtype | None) -> str:
    """``torch.bfloat16`` -> "bfloat16"; None (no autocast) -> "float32"."""
    return str(dtype or torch.float32).removeprefix("torch.")


def _choose(cfg: CfgNode, device: torch.device) -> tuple[torch.dtype | None, str]:
    if not cfg.SOLVER.FP_16:
        return None, "SOLVER.FP_16 False"
    if cfg.SOLVER.AMP_BACKEND == "apex":
        raise UserError("SOLVER.AMP_BACKEND 'apex': NVIDIA apex removed apex.amp; use "
                        "SOLVER.AMP_BACKEND native (torch.amp, the same O1-style mixed precision).")
    if device.type == "cuda":
        dtype = _DTYPES[cfg.SOLVER.AMP_DTYPE]
        scaler = ", with a grad scaler" if dtype == torch.float16 else ""
        return dtype, f"SOLVER.FP_16 on CUDA, SOLVER.AMP_DTYPE {cfg.SOLVER.AMP_DTYPE}{scaler}"
    if device.type != "cpu":
        return None, f"SOLVER.FP_16 is on but the device is {device.type}"
    choice = cfg.SOLVER.CPU_PRECISION
    if choice != "auto":
        return _DTYPES[choice], f"SOLVER.FP_16 on a CPU, SOLVER.CPU_PRECISION {choice}"
    if cpu_has_native_bf16():
        return torch.bfloat16, ("SOLVER.FP_16 on a CPU with native bfloat16 (SOLVER.CPU_PRECISION "
                                "auto; float32 with SOLVER.CPU_PRECISION float32)")
    return None, ("SOLVER.FP_16 is on but this CPU has no native bfloat16 (SOLVER.CPU_PRECISION "
                  "auto; emulated bfloat16 would be slower)")


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
