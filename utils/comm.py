"""Process-group helpers: the same code runs single-process, and multi-process under torchrun."""

from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist


def get_world_size() -> int:
    """Number of processes (1 when torch.distributed is not initialised)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def get_rank() -> int:
    """Rank of this process (0 when torch.distributed is not initialised)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main_process() -> bool:
    """True on rank 0: the process that logs, evaluates and writes files."""
    return get_rank() == 0


def synchronize() -> None:
    """Barrier across processes (no-op in single-process runs)."""
    if get_world_size() > 1:
        dist.barrier()


def max_across_ranks(value: int, device: torch.device) -> int:
    """The largest of every process's ``value`` (``value`` itself in one-process runs).

    A collective: every process must call it at the same point. The trainer uses it so that a
    stop, an error or a signal seen by one process stops all of them together instead of
    leaving the others blocked in the next collective.

    Args:
        value: this process's integer (e.g. 0 = carry on, a signal number, an error code).
        device: this process's device (NCCL reduces CUDA tensors, gloo CPU ones).
    """
    if get_world_size() == 1:
        return int(value)
    on = device if dist.get_backend() == "nccl" else torch.device("cpu")
    t = torch.tensor([int(value)], dtype=torch.int64, device=on)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


def init_distributed(device_type: str) -> bool:
    """Initialise the default process group when started by torchrun (WORLD_SIZE > 1).

    Args:
        device_type: "cuda" (NCCL backend) or "cpu" (gloo backend).

    Returns:
        True when a multi-process group was initialised.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or (dist.is_available() and dist.is_initialized()):
        return dist.is_available() and dist.is_initialized()
    backend = "nccl" if device_type == "cuda" and torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    # Rank 0 evaluates the whole test set while the others wait at a barrier: allow an hour.
    dist.init_process_group(backend=backend, timeout=timedelta(hours=1))
    return True


def resolve_device(device: str, device_id: str = "0") -> tuple[torch.device, str | None]:
    """The ``torch.device`` of this process, and a note when "cuda" fell back to the CPU.

    Args:
        device: MODEL.DEVICE ("cuda" or "cpu").
        device_id: MODEL.DEVICE_ID, used by single-process runs (torchrun uses LOCAL_RANK).
    """
    if device == "cuda":
        if not torch.cuda.is_available():
            return torch.device("cpu"), "CUDA is not available: running on the CPU."
        if "LOCAL_RANK" in os.environ:
            return torch.device("cuda", int(os.environ["LOCAL_RANK"])), None
        return torch.device("cuda", int(str(device_id).split(",")[0])), None
    return torch.device("cpu"), None
