"""Peak memory of a training step, with and without MODEL.GRAD_CHECKPOINT (``memory`` benchmark).

Each setting is measured in a fresh process, ``python -m tools.benchmark_memory --ckpt
True|False --root DIR [--config_file FILE] [KEY VALUE ...]``, which prints one JSON line: it
runs :meth:`engine.Trainer.run_step` on a random batch of the config's shape and reports the
peak memory over the weights, gradients and optimizer state (:func:`step_memory`). On CUDA
that is the largest allocation of a second step, after a warm-up step (which creates the
gradients and optimizer state and lets the cuDNN autotuner try its algorithms, whose workspace
a training run needs once) and ``torch.cuda.reset_peak_memory_stats``. On a CPU it is the
process's peak resident set (Linux VmHWM), which cannot be reset: the first training step's,
against the resident set just before it. :func:`bench_memory` starts both and collects the
figures.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys

import torch

from config import attributes_on
from data.attributes import encode_attributes
from tools.benchmark_pipeline import (
    benchmark_config,
    build_trainer,
    dtype_name,
    resolve_device,
    sync,
)
from tools.model_info import dataset_facts
from utils.errors import run_cli

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _rss_mb() -> float:
    """Peak resident set size of this process image so far (MB).

    Linux's VmHWM, not ``ru_maxrss``: the latter survives fork + exec, so a child started by a
    big parent would report the parent's size.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _current_rss_mb() -> float:
    """Current resident set size (MB; Linux /proc, else the peak so far)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return _rss_mb()


def random_train_batch(cfg, attr_lens: list[list[int]] | None) -> tuple:
    """A train-loader-shaped batch of random clips: ``(clips (B, T, 3, H, W), pids (B,),
    camids (B,), attrs)``, DATALOADER.NUM_INSTANCE clips per identity, attributes all class 0
    in the config's encoding."""
    b, t = cfg.SOLVER.SEQS_PER_BATCH, cfg.DATASETS.SEQ_LEN
    k = cfg.DATALOADER.NUM_INSTANCE
    h, w = cfg.INPUT.SIZE_TRAIN
    n_attr = sum(len(g) for g in attr_lens) if attr_lens else 0
    mode = cfg.DATASETS.ATTRIBUTE_LOSS if attributes_on(cfg, attr_lens) else "none"
    attrs = encode_attributes(torch.zeros(b, n_attr, dtype=torch.long), attr_lens, mode)
    return (torch.randn(b, t, 3, h, w), torch.arange(b // k).repeat_interleave(k),
            torch.zeros(b, dtype=torch.long), attrs)


CUDA_MEASURE = ("cuda max_memory_allocated of the second training step (after a warm-up step "
                "and reset_peak_memory_stats), over memory_allocated before it")
CPU_MEASURE = ("cpu peak resident set (VmHWM) of the benchmark process, whose largest moment is "
               "its first training step, over the resident set before that step (weights, "
               "gradients, optimizer state, the interpreter and libraries)")


def step_memory(trainer, batch: tuple, device: torch.device) -> dict:
    """Memory (MB) one training step of ``trainer`` on ``batch`` adds over the weights,
    gradients and optimizer state: ``peak_mb``, ``baseline_mb``, ``step_mb`` (their
    difference) and ``peak_measure`` (what was measured: :data:`CUDA_MEASURE` or
    :data:`CPU_MEASURE`).

    CUDA: a warm-up step (gradients, optimizer state, the cuDNN autotuner's trials and their
    workspace), then the allocated memory as baseline, ``reset_peak_memory_stats``, and the
    peak of the measured step. CPU: the gradients and optimizer state are created by a step on
    zero gradients without a forward, then the resident set is the baseline and the process's
    peak resident set after one step is the peak (a warm-up step would leave its freed
    activations in the allocator's cache, inside the baseline).
    """
    if device.type == "cuda":
        trainer.run_step(batch)                       # warm-up: not measured
        sync(device)
        base = torch.cuda.memory_allocated(device) / 2**20
        torch.cuda.reset_peak_memory_stats(device)
        trainer.run_step(batch)
        sync(device)
        peak = torch.cuda.max_memory_allocated(device) / 2**20
        measure = CUDA_MEASURE
    else:
        for p in trainer.model.parameters():
            p.grad = torch.zeros_like(p)
        trainer.optimizer.step()
        base = _current_rss_mb()
        trainer.run_step(batch)
        peak = _rss_mb()
        measure = CPU_MEASURE
    return {"peak_mb": peak, "baseline_mb": base, "step_mb": peak - base,
            "peak_measure": measure}


def measure_step_memory(config_file: str | None, opts: list[str], grad_ckpt: bool,
                        root: str) -> dict:
    """Memory of a training step in this process (:func:`step_memory`) on the benchmark's
    device (:func:`tools.benchmark_pipeline.resolve_device`), and ``amp_dtype``."""
    device = resolve_device(opts)
    cfg = benchmark_config(config_file, opts + ["MODEL.GRAD_CHECKPOINT", str(grad_ckpt)], device,
                           root)
    trainer = build_trainer(cfg, device)
    trainer.model.train()
    batch = random_train_batch(cfg, dataset_facts(cfg.DATASETS.NAME)[1])
    return {**step_memory(trainer, batch, device), "amp_dtype": dtype_name(trainer.amp_dtype)}


def bench_memory(config_file: str | None, opts: list[str], root: str) -> dict:
    """Peak memory of a training step with and without MODEL.GRAD_CHECKPOINT (fresh processes)."""
    out = {}
    for flag in (False, True):
        cmd = [sys.executable, "-m", "tools.benchmark_memory", "--ckpt", str(flag),
               "--root", root, "--config_file", config_file or "", *opts]
        r = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=REPO_ROOT)
        if r.returncode != 0:
            raise RuntimeError(f"memory benchmark child failed:\n{r.stderr[-2000:]}")
        res = json.loads(r.stdout.strip().splitlines()[-1])
        key = "checkpointed" if flag else "plain"
        out[f"peak_mb_{key}"] = res["step_mb"]
        out[f"process_peak_mb_{key}"] = res["peak_mb"]
    out["reduction"] = 1 - out["peak_mb_checkpointed"] / out["peak_mb_plain"]
    out["amp_dtype"] = res["amp_dtype"]
    out["peak_measure"] = res["peak_measure"]
    out["note"] = ("peak_mb_* = memory a training step adds over weights, gradients and "
                   "optimizer state (see peak_measure); process_peak_mb_* = the peak itself")
    return out


@run_cli
def main(argv: list[str] | None = None) -> int:
    """The child command of :func:`bench_memory`: prints :func:`measure_step_memory` as JSON."""
    parser = argparse.ArgumentParser(prog="python -m tools.benchmark_memory",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", choices=("True", "False"), required=True,
                        help="MODEL.GRAD_CHECKPOINT")
    parser.add_argument("--root", required=True, help="DATASETS.ROOT_DIR")
    parser.add_argument("--config_file", default="", metavar="FILE")
    parser.add_argument("opts", nargs=argparse.REMAINDER, metavar="KEY VALUE")
    args = parser.parse_args(argv)
    print(json.dumps(measure_step_memory(args.config_file, args.opts, args.ckpt == "True",
                                         args.root)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
