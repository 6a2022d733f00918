"""Batch samplers: P x K batches, exact length, per-epoch seeding, resume, rank split."""

import numpy as np
import pytest

from data.samplers import RandomBatchSampler, RandomIdentitySampler, sample_seeds
from utils.errors import UserError


def pids_with_counts(counts):
    """Tracklet pids: identity i has counts[i] tracklets, interleaved (not grouped)."""
    pids = [i for i, c in enumerate(counts) for _ in range(c)]
    return np.random.default_rng(0).permutation(pids).tolist()


def epoch(sampler, e):
    sampler.set_epoch(e)
    return list(sampler)


def check_pk(batches, pids, k):
    """Every batch holds whole identities: K consecutive tracklets each, distinct identities."""
    for b in batches:
        ids = [pids[i] for i, _ in b]
        groups = [ids[j:j + k] for j in range(0, len(ids), k)]
        assert all(len(set(g)) == 1 for g in groups)
        assert len({g[0] for g in groups}) == len(groups)


def test_identity_sampler_batches_and_length():
    counts = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 3]
    pids = pids_with_counts(counts)
    s = RandomIdentitySampler(pids, batch_size=8, num_instances=4, seed=3)
    assert len(s) == len(counts) * 4 // 8 == 5
    for e in range(4):
        batches = epoch(s, e)
        assert len(batches) == len(s) and all(len(b) == 8 for b in batches)
        check_pk(batches, pids, 4)
        ids = [pids[b[j][0]] for b in batches for j in range(0, 8, 4)]
        assert len(set(ids)) == len(ids)                   # each identity once per epoch
        for b in batches:
            for j in range(0, 8, 4):
                chosen = [i for i, _ in b[j:j + 4]]
                if counts[pids[chosen[0]]] >= 4:            # enough: without replacement
                    assert len(set(chosen)) == 4


def test_identity_sampler_replacement_for_small_identities():
    pids = [0, 1, 1, 1, 1, 1]
    s = RandomIdentitySampler(pids, batch_size=4, num_instances=4, seed=0)
    seen = set()
    for e in range(30):
        for b in epoch(s, e):
            idx = [i for i, _ in b]
            if pids[idx[0]] == 0:
                assert idx == [0, 0, 0, 0]
            seen.add(tuple(sorted(idx)))
    assert len(seen) > 2                                   # different subsets of identity 1


def test_identity_sampler_mars_length():
    pids = pids_with_counts([2 + i % 25 for i in range(625)])
    assert len(RandomIdentitySampler(pids, 32, 4, seed=999)) == 78
    assert len(RandomIdentitySampler(pids, 64, 4, seed=999)) == 39
    assert len(RandomIdentitySampler(pids, 64, 4, seed=999, num_replicas=2, rank=1)) == 39
    assert len(RandomIdentitySampler(pids, 32, 4, seed=999, num_replicas=2, rank=1)) == 78


def test_per_epoch_seeding_and_pure_sample_seeds():
    pids = pids_with_counts([4] * 12)
    a = RandomIdentitySampler(pids, 8, 4, seed=5)
    b = RandomIdentitySampler(pids, 8, 4, seed=5)
    epoch(b, 9)                                           # history does not matter
    assert epoch(a, 2) == epoch(b, 2)
    assert epoch(a, 2) != epoch(a, 3)
    assert epoch(a, 2) != epoch(RandomIdentitySampler(pids, 8, 4, seed=6), 2)
    batches = epoch(a, 2)
    seeds = [sd for bt in batches for _, sd in bt]
    assert seeds == sample_seeds(5, 2, np.arange(len(seeds))).tolist()
    assert len(set(seeds)) == len(seeds) and all(0 <= sd < 2**63 for sd in seeds)
    # resume mid-epoch: the remaining batches are the same as in the full epoch
    a.set_epoch(2)
    a.set_start(2)
    assert list(a) == batches[2:]
    assert list(a) == batches                             # the start applies once


def test_distributed_identity_split():
    counts = [3, 5, 4, 4, 6, 2, 4, 5, 4]
    pids = pids_with_counts(counts)
    ranks = [RandomIdentitySampler(pids, 8, 2, seed=1, num_replicas=2, rank=r) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == (9 // 2) * 2 // 4
    for e in range(5):
        per_rank = [epoch(s, e) for s in ranks]
        ids = []
        for batches in per_rank:
            assert all(len(b) == 4 for b in batches)      # per-rank batch = 8 / 2
            check_pk(batches, pids, 2)
            ids.append({pids[i] for b in batches for i, _ in b})
        assert not ids[0] & ids[1]                        # disjoint identities
        seeds = [sd for batches in per_rank for b in batches for _, sd in b]
        assert len(set(seeds)) == len(seeds)
    # positions count over ranks: rank r's batch b holds positions ((b * 2 + r) * 4 + slot)
    for r, s in enumerate(ranks):
        s.set_epoch(0)
        second = list(s)[1]
        assert [sd for _, sd in second] == sample_seeds(1, 0, np.arange(4) + (2 + r) * 4).tolist()


def test_identity_sampler_errors():
    pids = pids_with_counts([4] * 3)
    with pytest.raises(UserError, match=r"multiple of DATALOADER.NUM_INSTANCE \(4\)"):
        RandomIdentitySampler(pids, 10, 4)
    with pytest.raises(UserError, match=r"needs 4 identities .* has 3 identities"):
        RandomIdentitySampler(pids, 16, 4)
    with pytest.raises(UserError, match=r"multiple of the number of processes"):
        RandomIdentitySampler(pids, 9, 3, num_replicas=2)


def test_random_batch_sampler():
    s = RandomBatchSampler(23, 5, seed=2)
    assert len(s) == 4
    b0 = epoch(s, 0)
    idx = [i for b in b0 for i, _ in b]
    assert len(b0) == 4 and len(set(idx)) == 20 and set(idx) <= set(range(23))
    assert epoch(s, 0) == b0 and epoch(s, 1) != b0
    ranks = [RandomBatchSampler(23, 6, seed=2, num_replicas=2, rank=r) for r in (0, 1)]
    parts = [{i for b in epoch(r, 3) for i, _ in b} for r in ranks]
    assert len(ranks[0]) == 11 // 3 and not parts[0] & parts[1]
    with pytest.raises(UserError, match="fewer than one batch"):
        RandomBatchSampler(3, 4)
