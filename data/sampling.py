"""Clip sampling (docs/behaviour.md#clip-sampling): pure, seeded functions, frames -> indices.

No image is read here: every function maps the number of frames ``n`` of a tracklet and the
clip length ``seq_len`` (T) to int64 index arrays into the tracklet's frame list. Where chance
is involved, the caller passes the generator or seed, so a clip is a pure function of it.

The sample methods are the entries of two registries:

* :data:`TRAIN_SAMPLERS` (DATASETS.TRAIN_SAMPLE_METHOD): ``sampler(n, seq_len, generator)
  -> (T,)``, the positions of one training clip; ``generator`` (a seeded ``torch.Generator``,
  the one the clip's augmentations draw from next) is the only source of chance.
* :data:`TEST_SAMPLERS` (DATASETS.TEST_SAMPLE_METHOD): ``sampler(n, seq_len, max_clips, seed)
  -> (N, T)``, the clips of a test tracklet, at most ``max_clips`` (DATASETS.TEST_MAX_SEQ_NUM);
  ``seed`` is ``(RANDOM_SEED, stream, tracklet index)``, unique to the tracklet and its stream
  (:data:`data.video_dataset.STREAMS`), for any draw.

Example::

    g = torch.Generator().manual_seed(0)
    sample_random_clip(10, 4, g)          # e.g. array([3, 4, 5, 6])
    sample_dense_clips(10, 4, 200, 0)     # array([[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 8, 9]])
    TEST_SAMPLERS.get("evenly")(10, 4, 200, (0, 1, 5))    # array([[0, 2, 4, 6]])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from data.samplers import sample_seeds
from utils.registry import Registry

__all__ = ["TEST_SAMPLERS", "TRAIN_SAMPLERS", "frame_order", "sample_dense_clips",
           "sample_evenly_clip", "sample_random_clip"]

Seed = int | Sequence[int]

TRAIN_SAMPLERS: Registry[Callable[[int, int, torch.Generator], np.ndarray]] = Registry(
    "DATASETS.TRAIN_SAMPLE_METHOD", "training clip sampler")
TEST_SAMPLERS: Registry[Callable[[int, int, int, tuple[int, int, int]], np.ndarray]] = Registry(
    "DATASETS.TEST_SAMPLE_METHOD", "test clip sampler")


def _check(n: int, seq_len: int) -> None:
    if n < 1 or seq_len < 1:
        raise ValueError(f"need at least one frame and seq_len >= 1; got n={n}, seq_len={seq_len}")


@TRAIN_SAMPLERS.register("random")
def sample_random_clip(n: int, seq_len: int, generator: torch.Generator) -> np.ndarray:
    """T consecutive frames from a random start ("random" sampling of the original).

    The start is uniform in ``[0, max(0, n - T - 1)]`` (inclusive): the original's bound is one
    short, so for n > T the last window ``[n - T, n)`` is never drawn; kept, as the original.
    When ``n < T`` the frames are repeated cyclically (0, 1, .., n-1, 0, 1, ..).

    Args:
        n: number of frames of the tracklet.
        seq_len: clip length T.
        generator: torch.Generator that draws the start.

    Returns:
        int64 array (T,) of frame indices.
    """
    _check(n, seq_len)
    last_start = max(0, n - seq_len - 1)
    begin = int(torch.randint(0, last_start + 1, (1,), generator=generator))
    length = min(seq_len, n - begin)
    return begin + np.arange(seq_len, dtype=np.int64) % length


def sample_evenly_clip(n: int, seq_len: int) -> np.ndarray:
    """T frames evenly spaced over the tracklet.

    With ``n >= T`` the frames ``0, s, 2s, ..`` with stride ``s = (n - n % T) // T``; with
    ``n < T`` the frames repeated cyclically.

    Args:
        n: number of frames of the tracklet.
        seq_len: clip length T.

    Returns:
        int64 array (T,) of frame indices.
    """
    _check(n, seq_len)
    steps = np.arange(seq_len, dtype=np.int64)
    if n < seq_len:
        return steps % n
    return steps * ((n - n % seq_len) // seq_len)


@TRAIN_SAMPLERS.register("evenly")
def evenly_train_clip(n: int, seq_len: int, generator: torch.Generator) -> np.ndarray:
    """The training clip of :func:`sample_evenly_clip` (no chance: ``generator`` is unused)."""
    return sample_evenly_clip(n, seq_len)


def sample_dense_clips(n: int, seq_len: int, max_clips: int, seed: Seed) -> np.ndarray:
    """All consecutive chunks of T frames ("dense" test sampling of the original).

    The frames are split into ``ceil(n / T)`` chunks ``[0, T), [T, 2T), ..``; the last chunk
    is padded by cycling its own frames. When there are more than ``max_clips`` chunks, a
    window of ``max_clips`` consecutive chunks is kept, its start drawn uniformly from ``seed``
    (the original draws it from the global random state; here it is reproducible).

    Args:
        n: number of frames of the tracklet.
        seq_len: clip length T.
        max_clips: most clips kept (DATASETS.TEST_MAX_SEQ_NUM).
        seed: seed (int or sequence of ints, for ``np.random.default_rng``) of the window.

    Returns:
        int64 array (N, T) of frame indices, N = min(ceil(n / T), max_clips).
    """
    _check(n, seq_len)
    num = -(-n // seq_len)
    first = 0
    if num > max_clips:
        first = int(np.random.default_rng(seed).integers(0, num - max_clips + 1))
        num = max_clips
    base = (first + np.arange(num, dtype=np.int64))[:, None] * seq_len    # (N, 1)
    length = np.minimum(seq_len, n - base)                                 # (N, 1)
    return base + np.arange(seq_len, dtype=np.int64)[None, :] % length     # (N, T)


# ---------------------------------------------------------------- test sample methods
@TEST_SAMPLERS.register("dense")
def dense_test_clips(n: int, seq_len: int, max_clips: int, seed: tuple[int, int, int]
                     ) -> np.ndarray:
    """Every clip (:func:`sample_dense_clips`), the window of a long tracklet drawn from
    ``(*seed, 1)``."""
    return sample_dense_clips(n, seq_len, max_clips, [*seed, 1])


@TEST_SAMPLERS.register("evenly")
def evenly_test_clip(n: int, seq_len: int, max_clips: int, seed: tuple[int, int, int]
                     ) -> np.ndarray:
    """One clip of :func:`sample_evenly_clip`, (1, T)."""
    return sample_evenly_clip(n, seq_len)[None]


@TEST_SAMPLERS.register("random")
def random_test_clip(n: int, seq_len: int, max_clips: int, seed: tuple[int, int, int]
                     ) -> np.ndarray:
    """One clip of :func:`sample_random_clip`, (1, T): its generator is seeded with
    ``data.samplers.sample_seeds(RANDOM_SEED, stream, [index])``."""
    random_seed, stream, index = seed
    clip_seed = int(sample_seeds(random_seed, stream, np.array([index]))[0])
    return sample_random_clip(n, seq_len, torch.Generator().manual_seed(clip_seed))[None]


def frame_order(n: int, seed: Seed | None) -> np.ndarray:
    """The frame order of a tracklet: a seeded permutation, or the identity when ``seed`` is None.

    The original shuffles every tracklet's frame list once when the dataset is built
    (DATASETS.SHUFFLE_FRAMES True); a permutation drawn from a per-tracklet seed gives the
    same effect, reproducibly, in any process.

    Args:
        n: number of frames.
        seed: seed (int or sequence of ints) of the permutation; None keeps temporal order.

    Returns:
        int64 array (n,): position k of the shuffled list holds frame ``order[k]``.
    """
    if seed is None:
        return np.arange(n, dtype=np.int64)
    return np.random.default_rng(seed).permutation(n).astype(np.int64)
