"""Atomic checkpoint files, the ``last_checkpoint`` pointer and RNG-state capture for resume."""

from __future__ import annotations

import os
import pickle
import random
import tempfile
from typing import Any

import numpy as np
import torch

from utils.errors import UserError

LAST_POINTER = "last_checkpoint"


def atomic_save(obj: Any, path: str) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename over ``path``.

    A crash while writing leaves the previous file at ``path`` untouched.
    """
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".pth", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_text(text: str, path: str) -> None:
    """Write a small text file atomically (temporary file, then rename)."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


_ZIP_MAGIC = b"PK\x03\x04"   # torch.save since torch 1.6
_PICKLE_MAGIC = b"\x80"       # the legacy format: a pickle protocol header


def load_file(path: str, what: str = "checkpoint") -> Any:
    """Load a torch file safely (``weights_only=True``) on the CPU, with a clear error.

    The one loader of every weights file (checkpoints, TEST.WEIGHT, MODEL.PRETRAIN_PATH).

    Args:
        path: the file.
        what: how messages name it, e.g. "checkpoint" or "MODEL.PRETRAIN_PATH file".

    Raises:
        UserError: the file is missing, is not a PyTorch file at all, is truncated, or holds
            objects that a safe load refuses (the message names the file and never advises an
            unsafe load).
    """
    if not os.path.isfile(path):
        raise UserError(f"{what[0].upper()}{what[1:]} not found: '{path}'. Check the path.")
    with open(path, "rb") as f:
        head = f.read(4)
    if not (head.startswith(_ZIP_MAGIC) or head.startswith(_PICKLE_MAGIC)):
        raise UserError(f"The {what} '{path}' is not a PyTorch checkpoint (no torch.save "
                        "header): is it the right file, or a download that failed?")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # torch's text suggests the unsafe weights_only=False
        raise UserError(f"Cannot load the {what} '{path}' safely: it holds Python objects "
                        "beyond tensors, numbers and strings. Checkpoints of this project, the "
                        "original and torchvision hold none; use one of those.") from None
    except Exception as e:  # truncated or damaged file
        reason = str(e).split("\n")[0].split(". ")[0].strip()
        raise UserError(f"Cannot load the {what} '{path}' ({type(e).__name__}: {reason}): the "
                        "file is damaged or incomplete; re-download or re-create it.") from None


def capture_rng_state() -> dict:
    """RNG states of python, numpy, torch (and CUDA when available) as tensors/plain types."""
    np_state = np.random.get_state()
    state = {
        "python": repr(random.getstate()),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    """Restore the states captured by :func:`capture_rng_state`."""
    import ast

    random.setstate(_to_tuple(ast.literal_eval(state["python"])))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_tuple(x):
    return tuple(_to_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


class Checkpointer:
    """Saves and finds full training checkpoints in one folder.

    Args:
        save_dir: the run folder.
    """

    def __init__(self, save_dir: str):
        self.save_dir = save_dir

    def save(self, name: str, state: dict) -> str:
        """Write ``state`` to ``<save_dir>/<name>.pth`` atomically and point ``last_checkpoint``
        at it. Returns the path."""
        path = os.path.join(self.save_dir, f"{name}.pth")
        atomic_save(state, path)
        atomic_write_text(os.path.basename(path) + "\n", os.path.join(self.save_dir, LAST_POINTER))
        return path

    @staticmethod
    def find_last(folder: str) -> str:
        """The checkpoint named by ``<folder>/last_checkpoint`` (or by the newest run in it)."""
        pointer = os.path.join(folder, LAST_POINTER)
        if not os.path.isfile(pointer):
            runs = sorted(d for d in os.listdir(folder)
                          if os.path.isfile(os.path.join(folder, d, LAST_POINTER))) \
                if os.path.isdir(folder) else []
            if not runs:
                raise UserError(f"No '{LAST_POINTER}' file in '{folder}' or its run folders: "
                                "pass --resume path/to/checkpoint.pth.")
            pointer = os.path.join(folder, runs[-1], LAST_POINTER)
        with open(pointer, encoding="utf-8") as f:
            name = f.read().strip()
        return os.path.join(os.path.dirname(pointer), name)
