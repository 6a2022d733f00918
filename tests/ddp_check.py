"""Run under torchrun by tests/test_engine.py: checks the distributed identity sampler split
(each process sees whole identities, the processes see disjoint ones; gloo, CPU)."""

import sys

import torch.distributed as dist

from config import load_cfg
from data import make_data_loaders
from tests.helpers import tiny_opts
from utils.comm import get_rank, init_distributed


def main() -> None:
    root, out = sys.argv[1], sys.argv[2]
    init_distributed("cpu")
    cfg = load_cfg(None, tiny_opts(root, out, epochs=1))
    train_loader, _, _, dataset = make_data_loaders(cfg)
    train_loader.batch_sampler.set_epoch(1) if hasattr(train_loader.batch_sampler, "set_epoch") \
        else train_loader.sampler.set_epoch(1)
    pids = []
    for _, batch_pids, _, _ in train_loader:
        assert len(batch_pids) == cfg.SOLVER.SEQS_PER_BATCH // 2
        counts = batch_pids.bincount()
        assert set(counts[counts > 0].tolist()) == {cfg.DATALOADER.NUM_INSTANCE}   # P x K
        pids.extend(batch_pids.tolist())
    gathered = [None, None]
    dist.all_gather_object(gathered, set(pids))
    assert not gathered[0] & gathered[1], "ranks share identities"
    assert gathered[0] and gathered[1]
    if get_rank() == 0:
        print("ddp-check: sampler split ok", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
