"""Clip sampling functions against hand-computed indices and loop oracles."""

import numpy as np
import pytest
import torch

from data.sampling import frame_order, sample_dense_clips, sample_evenly_clip, sample_random_clip


def dense_oracle(n: int, t: int) -> list[list[int]]:
    """The original's dense loop: chunks of t, the last padded by cycling its own frames."""
    frames, out, cur = list(range(n)), [], 0
    while n - cur > t:
        out.append(frames[cur:cur + t])
        cur += t
    last = frames[cur:]
    for f in last:
        if len(last) >= t:
            break
        last.append(f)
    out.append(last)
    return out


def random_oracle(n: int, t: int, begin: int) -> list[int]:
    """The original's random clip for a given begin: consecutive frames, cyclic padding."""
    idx = list(range(n))[begin:begin + t]
    for f in idx:
        if len(idx) >= t:
            break
        idx.append(f)
    return idx


@pytest.mark.parametrize("n,t,expected", [
    (3, 8, [0, 1, 2, 0, 1, 2, 0, 1]),
    (4, 4, [0, 1, 2, 3]),
    (5, 4, [0, 1, 2, 3]),            # n - T - 1 = 0: the window [1, 5) is never drawn
    (1, 4, [0, 0, 0, 0]),
])
def test_random_clip_fixed_cases(n, t, expected):
    for seed in range(20):
        got = sample_random_clip(n, t, torch.Generator().manual_seed(seed))
        assert got.tolist() == expected and got.dtype == np.int64


def test_random_clip_begins_uniform_in_original_range():
    n, t = 10, 4
    begins = []
    for seed in range(400):
        got = sample_random_clip(n, t, torch.Generator().manual_seed(seed))
        begins.append(int(got[0]))
        assert got.tolist() == random_oracle(n, t, int(got[0]))
    counts = np.bincount(begins, minlength=7)
    assert counts[6] == 0                              # n - T = 6 is excluded (original quirk)
    assert (counts[:6] > 40).all()                     # 0..5 all drawn, roughly uniformly
    a = sample_random_clip(n, t, torch.Generator().manual_seed(7))
    b = sample_random_clip(n, t, torch.Generator().manual_seed(7))
    assert a.tolist() == b.tolist()


@pytest.mark.parametrize("n,t,expected", [
    (10, 4, [0, 2, 4, 6]),
    (8, 4, [0, 2, 4, 6]),
    (12, 4, [0, 3, 6, 9]),
    (4, 4, [0, 1, 2, 3]),
    (7, 4, [0, 1, 2, 3]),
    (3, 4, [0, 1, 2, 0]),
])
def test_evenly_clip(n, t, expected):
    assert sample_evenly_clip(n, t).tolist() == expected


def test_dense_clips_hand_computed():
    assert sample_dense_clips(10, 4, 200, 0).tolist() == [[0, 1, 2, 3], [4, 5, 6, 7],
                                                          [8, 9, 8, 9]]
    assert sample_dense_clips(9, 4, 200, 0).tolist() == [[0, 1, 2, 3], [4, 5, 6, 7],
                                                         [8, 8, 8, 8]]
    assert sample_dense_clips(8, 4, 200, 0).tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert sample_dense_clips(2, 4, 200, 0).tolist() == [[0, 1, 0, 1]]
    assert sample_dense_clips(11, 4, 200, 0).tolist()[-1] == [8, 9, 10, 8]


def test_dense_clips_match_the_original_loop():
    for n in range(1, 40):
        for t in (1, 2, 3, 4, 6):
            assert sample_dense_clips(n, t, 1000, 0).tolist() == dense_oracle(n, t), (n, t)


def test_dense_window_is_reproducible_and_covers_all_starts():
    n, t, m = 43, 4, 3                                  # 11 chunks, keep 3
    full = dense_oracle(n, t)
    starts = set()
    for seed in range(200):
        got = sample_dense_clips(n, t, m, [seed, 1]).tolist()
        assert got == sample_dense_clips(n, t, m, [seed, 1]).tolist()
        start = full.index(got[0])
        assert got == full[start:start + m]
        starts.add(start)
    assert starts == set(range(len(full) - m + 1))


def test_frame_order():
    assert frame_order(5, None).tolist() == [0, 1, 2, 3, 4]
    a = frame_order(50, [999, 0, 3])
    assert sorted(a.tolist()) == list(range(50)) and a.tolist() != list(range(50))
    assert a.tolist() == frame_order(50, [999, 0, 3]).tolist()
    assert a.tolist() != frame_order(50, [999, 0, 4]).tolist()


def test_invalid_counts():
    with pytest.raises(ValueError):
        sample_dense_clips(0, 4, 10, 0)
    with pytest.raises(ValueError):
        sample_evenly_clip(3, 0)
