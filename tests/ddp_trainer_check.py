"""Run under torchrun (2 processes, gloo, CPU) by tests/test_engine.py: the Trainer's
cross-process agreements.

    ddp_trainer_check.py ROOT OUT centres    the centre-loss centres stay equal on every rank
    ddp_trainer_check.py ROOT OUT stop       a signal seen by rank 1 alone stops both ranks
    ddp_trainer_check.py ROOT OUT evalfail   rank 0's failed evaluation stops rank 1 too
    ddp_trainer_check.py ROOT OUT nonfinite  rank 1's NaN loss stops rank 0 too

Each prints "ddp-trainer-check: <mode> ok" on rank 0 when the agreement held; a missing
agreement leaves a rank blocked in a collective, which the test's timeout catches.
"""

import signal
import sys

import torch
import torch.distributed as dist

from config import load_cfg
from data import make_data_loaders
from engine import Interrupted, Trainer, wrap_distributed
from engine.trainer import NonFiniteLossError
from modeling import build_model
from tests.helpers import tiny_opts
from utils.comm import get_rank, init_distributed

CENTER = ["SOLVER.USE_CENTER_LOSS", "True", "MODEL.IF_WITH_CENTER", "yes",
          "MODEL.METRIC_LOSS_TYPE", "triplet_center", "SOLVER.LOG_PERIOD", "1",
          "SOLVER.CENTER_LR", "5.0"]


def trainer_of(root: str, out: str) -> Trainer:
    cfg = load_cfg(None, [*tiny_opts(root, out, epochs=1), *CENTER])
    train, query, gallery, ds = make_data_loaders(cfg)
    torch.manual_seed(0)   # the same initial weights on both ranks
    model = build_model(cfg, ds.num_train_pids, ds.attr_lens, device="cpu")
    model = wrap_distributed(model, torch.device("cpu"), cfg.MODEL.SYN_BN)
    return Trainer.from_config(cfg, model, (train, query, gallery), ds, torch.device("cpu"),
                               None)


def gathered(t: torch.Tensor) -> list[torch.Tensor]:
    out = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(out, t.contiguous())
    return out


def check_centres(trainer: Trainer) -> None:
    trainer._train_epoch(1)
    centres = trainer.criterion.center_loss.centers.detach()
    a, b = gathered(centres)
    assert torch.equal(a, b), f"centres differ across ranks by {float((a - b).abs().max())}"
    for p in trainer.bare_model.parameters():
        a, b = gathered(p.detach())
        assert torch.equal(a, b), "model weights differ across ranks"


def check_stop(trainer: Trainer) -> None:
    real = trainer.run_step

    def run_step(batch, *args):
        out = real(batch, *args)
        if get_rank() == 1 and trainer.iteration == 0:   # rank 1 alone, first iteration
            trainer._stop_signal = signal.SIGTERM
        return out

    trainer.run_step = run_step
    try:
        trainer._train_epoch(1)
    except Interrupted as e:
        assert trainer.iteration == 1, trainer.iteration
        assert e.signum == signal.SIGTERM
        return
    raise AssertionError("rank did not stop")


def check_evalfail(trainer: Trainer) -> None:
    def fail(epoch):
        raise RuntimeError("a failing evaluation on rank 0")

    trainer._evaluate_and_keep_best = fail
    try:
        trainer.evaluate(1)
    except RuntimeError as e:
        expected = "a failing evaluation" if get_rank() == 0 else "failed on process 0"
        assert expected in str(e), str(e)
        return
    raise AssertionError("evaluation did not fail")


def check_nonfinite(trainer: Trainer) -> None:
    real = trainer.criterion.forward

    def forward(*args):
        out = dict(real(*args))
        if get_rank() == 1:
            out["loss_triplet"] = out["loss_triplet"] * float("nan")
        return out

    trainer.criterion.forward = forward
    try:
        trainer._train_epoch(1)
    except NonFiniteLossError as e:
        expected = "loss_triplet" if get_rank() == 1 else "another process"
        assert expected in str(e), str(e)
        assert trainer.iteration == 1
        return
    raise AssertionError("no stop")


def main() -> None:
    root, out, mode = sys.argv[1:4]
    init_distributed("cpu")
    trainer = trainer_of(root, out)
    {"centres": check_centres, "stop": check_stop, "evalfail": check_evalfail,
     "nonfinite": check_nonfinite}[mode](trainer)
    dist.barrier()
    if get_rank() == 0:
        print(f"ddp-trainer-check: {mode} ok", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
