"""Atomic checkpoint files, the ``last_checkpoint`` pointer, the best-rank-1 file name and
RNG-state capture for resume."""

from __future__ import annotations

import ast
import logging
import os
import pickle
import random
import re
import secrets
from collections.abc import Callable
from typing import IO, Any

import numpy as np
import torch

from utils.errors import UserError

LAST_POINTER = "last_checkpoint"
TEMP_PREFIX = ".tmp-"   # the files atomic_write writes before renaming them
_BEST_NAME = re.compile(r"rank1_(\d+(?:\.\d+)?)_checkpoint_ep(\d+)\.pth")


def _create_temp(folder: str, suffix: str = "") -> tuple[int, str]:
    """Create a new hidden file in ``folder``; returns its descriptor and path.

    Its mode is that of a normally written file (0666 less the umask), not ``mkstemp``'s 0600:
    the renamed file then matches the rest of the run folder.
    """
    while True:
        path = os.path.join(folder, f"{TEMP_PREFIX}{secrets.token_hex(8)}{suffix}")
        try:
            return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), path
        except FileExistsError:
            continue


def atomic_write(path: str, write: Callable[[IO[bytes]], None], suffix: str = "") -> None:
    """Write through ``write(binary file)`` to a temporary file in the folder of ``path``, flush
    it to disk, then rename it over ``path``; a failure leaves the previous file untouched."""
    fd, tmp = _create_temp(os.path.dirname(os.path.abspath(path)), suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_save(obj: Any, path: str) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename over ``path``.

    A crash while writing leaves the previous file at ``path`` untouched. The file gets the
    mode of a normally written one (the umask applies).
    """
    atomic_write(path, lambda f: torch.save(obj, f), suffix=".pth")


def atomic_write_text(text: str, path: str) -> None:
    """Write a small text file atomically (temporary file, then rename; the umask applies)."""
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def check_writable_file(path: str, option: str = "--out") -> None:
    """Create the missing parent folders of ``path``, then raise a UserError naming ``path``
    when a file cannot be written there.

    For commands to call before any work (``--out runs/x/feat.npz`` creates ``runs/x/``); an
    existing file is left as it is, and folders created for a path that cannot be written are
    removed again.

    Args:
        path: the output file.
        option: how the message names it (the command-line option).

    Raises:
        UserError: a parent is a file, a folder cannot be created, ``path`` is a folder or
            cannot be written; the message names the path and the reason.
    """
    existed = os.path.exists(path)
    folder = os.path.dirname(os.path.abspath(path))
    missing = []                      # the folders to create, innermost first
    while folder and not os.path.lexists(folder):
        missing.append(folder)
        folder = os.path.dirname(folder)
    try:
        for created in reversed(missing):
            try:
                os.mkdir(created)
            except FileExistsError:   # made meanwhile by another process
                if not os.path.isdir(created):
                    raise
        if os.path.isdir(path):
            raise IsADirectoryError(21, "it is a folder")
        with open(path, "a", encoding="utf-8"):
            pass
    except OSError as e:
        for created in missing:       # innermost first; only the ones made here, still empty
            try:
                os.rmdir(created)
            except OSError:
                pass
        reason = e.strerror or type(e).__name__
        raise UserError(f"{option} '{path}' cannot be written ({reason}): give a file in a "
                        "folder you can write.") from None
    if not existed:
        os.remove(path)


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
    if os.path.isdir(path):
        raise UserError(f"The {what} '{path}' is a folder, not a file: give a checkpoint file "
                        "in it, e.g. '<run folder>/checkpoint_ep<e>.pth' or a "
                        "'rank1_*_checkpoint_ep<e>.pth'.")
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
    """Restore the states captured by :func:`capture_rng_state`.

    CUDA generators are restored for the GPUs that both the checkpoint and this process have
    (a run trained on 8 GPUs resumes on 1, and one trained on a CPU on a GPU machine); the
    others keep their seeds, said in the log.
    """
    random.setstate(_to_tuple(ast.literal_eval(state["python"])))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])
    saved = list(state.get("cuda", []))
    here = torch.cuda.device_count() if torch.cuda.is_available() else 0
    for index in range(min(len(saved), here)):
        torch.cuda.set_rng_state(saved[index], index)
    if saved and len(saved) != here:
        logging.getLogger("reid.train").info(
            "The checkpoint holds the CUDA random states of %d GPU(s) and this process sees %d: "
            "%d restored, the rest keep their seeds.", len(saved), here, min(len(saved), here))


def _to_tuple(x):
    return tuple(_to_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


def best_checkpoint_name(r1: float, epoch: int) -> str:
    """File name of a run's model with a new best rank-1 (the original's naming, by R1 only):
    ``rank1_<r1 rounded to 4 digits>_checkpoint_ep<epoch>.pth``."""
    return f"rank1_{round(r1, 4)}_checkpoint_ep{epoch}.pth"


def choose_checkpoint(paths: list[str]) -> tuple[str, str]:
    """The checkpoint to use among several, e.g. the files of a glob ``<run>/rank1_*.pth``.

    Returns:
        ``(path, why)``: when every name is a :func:`best_checkpoint_name`, the highest rank-1
        (then the latest epoch); otherwise the newest file. ``why`` says which rule chose it.

    Raises:
        UserError: a path is not a file.
    """
    absent = [p for p in paths if not os.path.isfile(p)]
    if absent:
        raise UserError(f"Checkpoint not found: {', '.join(repr(p) for p in absent)}. Check "
                        "the paths.")
    best = [_BEST_NAME.fullmatch(os.path.basename(p)) for p in paths]
    if all(best):
        scores = [(float(m[1]), int(m[2])) for m in best]
        return paths[scores.index(max(scores))], "the best rank-1"
    mtimes = [os.path.getmtime(p) for p in paths]
    return paths[mtimes.index(max(mtimes))], "the newest file"


class Checkpointer:
    """Saves and finds full training checkpoints in one folder.

    Args:
        save_dir: the run folder.
    """

    def __init__(self, save_dir: str):
        self.save_dir = save_dir

    def remove_stale_files(self) -> list[str]:
        """Delete the partial ``.tmp-*`` files that a killed checkpoint write left in the run
        folder (a finished write renames its file, so none belongs to a live write of this
        run: one process writes a run's checkpoints). Returns the removed paths."""
        removed = []
        for name in sorted(os.listdir(self.save_dir)):
            path = os.path.join(self.save_dir, name)
            if name.startswith(TEMP_PREFIX) and os.path.isfile(path):
                os.remove(path)
                removed.append(path)
        return removed

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
