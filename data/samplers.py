"""Seeded, resumable batch samplers that yield ``(index, sample_seed)`` pairs.

Determinism contract: the sample at position ``p`` of epoch ``e`` (which tracklet, and the
seed of its clip sampling and augmentation) is a pure function of ``(seed, e, p)``. It does not
depend on the number of loader workers, persistent workers or what ran before, so a run
resumed from a checkpoint reproduces an uninterrupted one. Call ``set_epoch(e)`` before each
epoch; ``set_start(k)`` skips the first ``k`` batches of the next epoch (resuming mid-epoch).

In a multi-process run (torch.distributed) every rank builds the same epoch plan from the seed
and takes its share: the identity sampler splits the identities, so every rank's batch still
holds whole identities (P x K), with a per-rank batch of ``batch_size // num_replicas``.
Position ``p`` counts over all ranks (``p = (batch * num_replicas + rank) * per_rank + slot``),
so one process sees the seeds of the first rank's share of a two-process run.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from utils.errors import UserError

__all__ = ["RandomBatchSampler", "RandomIdentitySampler", "check_batch_shape", "sample_seeds"]

_MASK63 = np.uint64(0x7FFF_FFFF_FFFF_FFFF)


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a bijective, well-mixed hash of uint64 values (wraps on purpose)."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def sample_seeds(seed: int, epoch: int, positions: np.ndarray) -> np.ndarray:
    """Seeds of the samples at ``positions`` of ``epoch``: a pure hash of (seed, epoch, p).

    Args:
        seed: the run's seed (RANDOM_SEED).
        epoch: the epoch number.
        positions: int array of sample positions in the epoch.

    Returns:
        int64 array of the same shape, values in [0, 2**63).
    """
    gold = np.uint64(0x9E3779B97F4A7C15)
    h = _mix64(np.full(1, seed % 2**64, dtype=np.uint64) + gold)
    h = _mix64(h ^ (np.uint64(epoch % 2**64) + gold))
    pos = np.asarray(positions, dtype=np.int64).astype(np.uint64)
    return (_mix64(h ^ (pos * gold + gold)) & _MASK63).astype(np.int64)


def check_batch_shape(batch_size: int, num_replicas: int = 1,
                      num_instances: int | None = None) -> int:
    """The batch of one process: ``batch_size`` tracklets (SOLVER.SEQS_PER_BATCH) shared equally
    by ``num_replicas`` processes and, for the identity sampler (``num_instances`` K,
    DATALOADER.NUM_INSTANCE), P identities x K tracklets per process.

    The one check of the batch shape: the samplers call it, and so do the training runs before
    any work (:func:`engine.defaults.check_batch_identities`).

    Returns:
        the per-process batch size ``batch_size // num_replicas``.

    Raises:
        UserError: ``batch_size`` is not a multiple of ``num_replicas``, or the per-process
            batch not a multiple of ``num_instances``.
    """
    if batch_size % num_replicas:
        raise UserError(f"The batch size {batch_size} (SOLVER.SEQS_PER_BATCH) must be a "
                        f"multiple of the number of processes ({num_replicas}): every "
                        "process takes an equal share of each batch.")
    per_rank = batch_size // num_replicas
    if num_instances is not None and (num_instances < 1 or per_rank % num_instances):
        raise UserError(
            f"The batch of {per_rank} tracklets per process (SOLVER.SEQS_PER_BATCH "
            f"{batch_size} / {num_replicas} process(es)) must be a multiple of "
            f"DATALOADER.NUM_INSTANCE ({num_instances}): a batch holds P identities x K "
            "tracklets. Change one of the two.")
    return per_rank


class _EpochBatchSampler:
    """Common part: epoch/start bookkeeping, rank split and the (index, seed) pairs."""

    def __init__(self, batch_size: int, seed: int, num_replicas: int, rank: int) -> None:
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"invalid rank {rank} of {num_replicas} processes")
        self.per_rank = check_batch_shape(batch_size, num_replicas)
        self.batch_size = batch_size
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        self._start = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose batches the next iteration yields."""
        self.epoch = int(epoch)

    def set_start(self, start: int) -> None:
        """Skip the first ``start`` batches of the next iteration (resume mid-epoch)."""
        self._start = int(start)

    def _plan(self) -> np.ndarray:
        """This rank's sample indices of the epoch, (num_batches, per_rank)."""
        raise NotImplementedError

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        start, self._start = self._start, 0
        plan = self._plan()                                              # (nb, per_rank)
        nb = plan.shape[0]
        batch_ids = np.arange(nb, dtype=np.int64)[:, None]
        slots = np.arange(self.per_rank, dtype=np.int64)[None, :]
        positions = (batch_ids * self.num_replicas + self.rank) * self.per_rank + slots
        seeds = sample_seeds(self.seed, self.epoch, positions)           # (nb, per_rank)
        for b in range(start, nb):
            yield list(zip(plan[b].tolist(), seeds[b].tolist(), strict=True))


class RandomIdentitySampler(_EpochBatchSampler):
    """P identities x K tracklets per batch (DATALOADER.SAMPLER "softmax_triplet" or "triplet").

    Each epoch visits the identities in a random order and draws ``num_instances`` (K)
    tracklets of each: without replacement when it has at least K, else with replacement.
    The concatenation (ids x K) is cut into batches with drop_last, so every batch holds
    ``batch_size // K`` whole identities, K consecutive entries each (MARS, batch 32, K 4:
    625 x 4 = 2500 samples, 78 batches).

    With ``num_replicas`` > 1 the shuffled identities are dealt to the ranks in turn (the
    ``num_ids % num_replicas`` last ones sit out the epoch) and each rank cuts its own share
    into batches of ``batch_size // num_replicas`` (a multiple of K): all ranks run the same
    number of steps and never share an identity within an epoch.

    Args:
        data_source_pids: the (relabelled) pid of every training tracklet.
        batch_size: tracklets per step over all processes (SOLVER.SEQS_PER_BATCH).
        num_instances: K, tracklets per identity (DATALOADER.NUM_INSTANCE).
        seed: RANDOM_SEED; epoch e's plan is drawn from ``(seed, e)``.
        num_replicas: number of processes (torch.distributed world size).
        rank: this process's rank.

    Yields:
        per batch, a list of ``(tracklet index, sample seed)`` pairs.
    """

    def __init__(self, data_source_pids: Sequence[int], batch_size: int, num_instances: int,
                 seed: int = 0, num_replicas: int = 1, rank: int = 0) -> None:
        super().__init__(batch_size, seed, num_replicas, rank)
        check_batch_shape(batch_size, num_replicas, num_instances)
        self.num_instances = num_instances
        pids = np.asarray(data_source_pids, dtype=np.int64)
        self.pids, group = np.unique(pids, return_inverse=True)
        self.members = np.argsort(group, kind="stable")          # tracklets grouped by id
        self.group_of_member = group[self.members]
        self.counts = np.bincount(group, minlength=len(self.pids))
        self.starts = np.concatenate([[0], np.cumsum(self.counts)[:-1]])
        self.ids_per_rank = len(self.pids) // num_replicas
        ids_per_batch = self.per_rank // num_instances
        if self.ids_per_rank < ids_per_batch:
            raise UserError(
                f"A batch needs {ids_per_batch} identities per process (SOLVER.SEQS_PER_BATCH "
                f"{batch_size} / DATALOADER.NUM_INSTANCE {num_instances}"
                f"{f' / {num_replicas} processes' if num_replicas > 1 else ''}), but the "
                f"training set has {len(self.pids)} identities"
                f"{f' ({self.ids_per_rank} per process)' if num_replicas > 1 else ''}. "
                "Lower SOLVER.SEQS_PER_BATCH or raise DATALOADER.NUM_INSTANCE.")
        self.num_batches = self.ids_per_rank * num_instances // self.per_rank

    def __len__(self) -> int:
        return self.num_batches

    def _plan(self) -> np.ndarray:
        rng = np.random.default_rng([self.seed, self.epoch])
        k = self.num_instances
        order = rng.permutation(len(self.pids))
        # Without replacement: shuffle within each identity, keep its first K.
        within = np.lexsort((rng.random(len(self.members)), self.group_of_member))
        shuffled = self.members[within]
        take = self.starts[:, None] + np.arange(k)[None, :]                  # (ids, K)
        no_repl = shuffled[np.minimum(take, len(shuffled) - 1)]
        # With replacement for identities with fewer than K tracklets.
        draw = (rng.random((len(self.pids), k)) * self.counts[:, None]).astype(np.int64)
        repl = self.members[self.starts[:, None] + draw]
        chosen = np.where((self.counts >= k)[:, None], no_repl, repl)        # (ids, K)
        mine = order[self.rank:self.ids_per_rank * self.num_replicas:self.num_replicas]
        flat = chosen[mine].reshape(-1)                                      # (ids_rank * K,)
        return flat[:self.num_batches * self.per_rank].reshape(self.num_batches, self.per_rank)


class RandomBatchSampler(_EpochBatchSampler):
    """Random batches of a seeded per-epoch permutation, drop_last (SAMPLER "softmax").

    With ``num_replicas`` > 1 the permutation is dealt to the ranks in turn; each rank takes
    batches of ``batch_size // num_replicas``.

    Args:
        num_samples: number of training tracklets.
        batch_size: tracklets per step over all processes (SOLVER.SEQS_PER_BATCH).
        seed: RANDOM_SEED.
        num_replicas: number of processes.
        rank: this process's rank.
    """

    def __init__(self, num_samples: int, batch_size: int, seed: int = 0, num_replicas: int = 1,
                 rank: int = 0) -> None:
        super().__init__(batch_size, seed, num_replicas, rank)
        self.num_samples = num_samples
        self.per_rank_samples = num_samples // num_replicas
        self.num_batches = self.per_rank_samples // self.per_rank
        if self.num_batches < 1:
            raise UserError(f"The training set has {num_samples} tracklets, fewer than one batch "
                            f"(SOLVER.SEQS_PER_BATCH {batch_size}). Lower SOLVER.SEQS_PER_BATCH.")

    def __len__(self) -> int:
        return self.num_batches

    def _plan(self) -> np.ndarray:
        perm = np.random.default_rng([self.seed, self.epoch]).permutation(self.num_samples)
        mine = perm[self.rank:self.per_rank_samples * self.num_replicas:self.num_replicas]
        return mine[:self.num_batches * self.per_rank].reshape(self.num_batches, self.per_rank)
