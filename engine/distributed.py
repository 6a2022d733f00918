"""Wrapping a model for torchrun training: DDP and SyncBatchNorm (docs/behaviour.md#multi-gpu)."""

from __future__ import annotations

import logging

import torch
import torch.nn as nn

from utils.comm import get_world_size

logger = logging.getLogger("reid.train")


def convert_sync_bn(model: nn.Module) -> tuple[nn.Module, int]:
    """Replace every BatchNorm layer by ``torch.nn.SyncBatchNorm``; returns (model, count)."""
    model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model, sum(isinstance(m, nn.SyncBatchNorm) for m in model.modules())


def wrap_distributed(model: nn.Module, device: torch.device, syn_bn: bool) -> nn.Module:
    """DistributedDataParallel (with SyncBatchNorm when ``syn_bn`` and world size > 1).

    SyncBatchNorm only runs on GPUs: CPU (gloo) processes keep per-process BatchNorm, said once
    in the log.
    """
    if syn_bn and get_world_size() > 1:
        if device.type == "cuda":
            model, n = convert_sync_bn(model)
            logger.info("MODEL.SYN_BN: %d BatchNorm layers synchronised across %d processes.", n,
                        get_world_size())
        else:
            logger.info("MODEL.SYN_BN: SyncBatchNorm needs GPUs; CPU processes keep their own "
                        "BatchNorm statistics.")
    return nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None)


def unwrap(model: nn.Module) -> nn.Module:
    """The model without its DistributedDataParallel wrapper."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
