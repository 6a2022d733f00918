"""Measure the pipeline: training step, extraction, evaluation, data loading, memory, compute.

    python -m tools.benchmark [train|extract|eval|data|memory|loss|compute|all]
        [--config_file FILE] [--out benchmark.json] [--steps N] [--variants LIST]
        [--no-speedups] [KEY VALUE ...]

Prints a table per benchmark and writes JSON (machine, torch version, device, command, then one
object per benchmark; rewritten after each benchmark, so a run cut short keeps the finished
ones). The model is the config's (default: the paper model, ResNet-50 ATTR_TA, T=4, 256x128)
with random weights; images come from a synthetic MARS-format folder written to a temporary
directory and removed afterwards. The device is ``MODEL.DEVICE`` when an override sets it, else
CUDA when available, else the CPU; every benchmark runs there (evaluation's CMC/mAP: numpy).
Each benchmark starts from the process's cuDNN autotuner setting, which is restored after it.
The benchmarks live in :mod:`tools.benchmark_train` (train: float32 / bf16 / fp16,
channels_last on and off, compiled, interleaved), :mod:`tools.benchmark_pipeline` (extract,
data, compute), :mod:`tools.benchmark_memory`, :mod:`tools.benchmark_eval` and
:mod:`tools.benchmark_losses`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time

import torch
from yacs.config import CfgNode

from engine import CONFIG_KEY, parse_command_line
from tools.benchmark_eval import run_eval_benchmark
from tools.benchmark_losses import run_loss_benchmark
from tools.benchmark_memory import bench_memory
from tools.benchmark_pipeline import (
    bench_compute,
    bench_data,
    bench_extract,
    benchmark_config,
    resolve_device,
    write_bench_dataset,
)
from tools.benchmark_train import (
    DEFAULT_STEPS,
    TRAIN_VARIANTS,
    bench_train,
    default_variants,
    format_train_table,
    parse_variants,
)
from utils.checkpoint import check_writable_file
from utils.errors import run_cli

BENCHMARKS = ("train", "extract", "eval", "data", "memory", "loss", "compute")
NEEDS_IMAGES = ("train", "data", "memory")     # benchmarks reading the synthetic folder


def _flat(res: dict, prefix: str = "") -> list[tuple[str, object]]:
    """(dotted key, value) of every leaf of a nested report."""
    rows = []
    for k, v in res.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            rows.extend(_flat(v, key + "."))
        else:
            rows.append((key, v))
    return rows


def _print_table(name: str, res: dict) -> None:
    """One benchmark's figures (the train variants as a table of their own)."""
    print(f"\n== {name} ==")
    shown = {k: v for k, v in res.items() if not (name == "train" and k == "variants")}
    for k, v in _flat(shown):
        print(f"  {k:<40} {v:.4g}" if isinstance(v, float) else f"  {k:<40} {v}")
    if name == "train" and "variants" in res:
        print(format_train_table(res))


def _cpu_name() -> str:
    """The CPU model (Linux /proc/cpuinfo, else platform.processor())."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def build_parser() -> argparse.ArgumentParser:
    """Command line of ``python -m tools.benchmark``."""
    p = argparse.ArgumentParser(prog="python -m tools.benchmark",
                                description=__doc__.splitlines()[0])
    p.add_argument("which", nargs="?", default="all",
                   help=f"one of {', '.join(BENCHMARKS + ('all',))} (default: all)")
    p.add_argument("--config_file", default="", metavar="FILE",
                   help="model/input config (default: configs/mars_aitl.yml)")
    p.add_argument("--out", default="benchmark.json", metavar="FILE")
    p.add_argument("--steps", "--iters", dest="steps", type=int, default=None, metavar="N",
                   help="train: timed steps per variant, after one warm-up step each "
                        f"(default: {DEFAULT_STEPS['cpu']} on a CPU, {DEFAULT_STEPS['cuda']} "
                        "on CUDA)")
    p.add_argument("--variants", default="", metavar="LIST",
                   help="train: comma-separated variants, run interleaved, or 'all' (default "
                        f"on a CPU: {','.join(default_variants(torch.device('cpu')))}; on "
                        f"CUDA: {','.join(default_variants(torch.device('cuda')))}); "
                        f"known: {', '.join(TRAIN_VARIANTS)}")
    p.add_argument("--no-speedups", action="store_true",
                   help="train: also time the step without the speed-ups (variant "
                        "no_speedups: NCHW, float32 on a CPU, foreach optimizer kernels, no "
                        "cuDNN autotuner); alone, only that variant")
    p.add_argument("opts", nargs="*", metavar="KEY VALUE",
                   help="config overrides, e.g. MODEL.NAME resnet18")
    return p


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Options may come before or after the benchmark name and the ``KEY VALUE`` overrides."""
    parser = build_parser()
    args = parse_command_line(parser, argv)
    if args.which not in BENCHMARKS + ("all",):
        if CONFIG_KEY.match(args.which):                    # a config key: no name was given
            args.opts.insert(0, args.which)
            args.which = "all"
        else:
            parser.error(f"unknown benchmark {args.which!r}; choose from "
                         f"{', '.join(BENCHMARKS + ('all',))}")
    try:
        args.variants = parse_variants(args.variants)
    except ValueError as e:
        parser.error(f"--variants: {e}")
    if args.no_speedups:
        args.variants = [*(args.variants or []), "no_speedups"]
        args.variants = list(dict.fromkeys(args.variants))
    if args.steps is not None and args.steps < 1:
        parser.error(f"--steps must be at least 1, got {args.steps}")
    return args


def run_benchmark(name: str, args: argparse.Namespace, cfg: CfgNode, device: torch.device,
                  root: str, report: dict) -> dict:
    """One benchmark's results (``report`` holds the earlier ones: compute reads train's)."""
    if name == "train":
        steps = args.steps or DEFAULT_STEPS.get(device.type, DEFAULT_STEPS["cpu"])
        return bench_train(cfg, device, steps, args.variants)
    if name == "extract":
        return bench_extract(cfg, device)
    if name == "eval":
        return run_eval_benchmark()
    if name == "data":
        return bench_data(cfg)
    if name == "memory":
        return bench_memory(args.config_file, args.opts, root)
    if name == "loss":
        return {"device": str(device), **run_loss_benchmark(device=device)}
    return bench_compute(cfg, device, report.get("train"))


def run_sections(which: tuple[str, ...], args: argparse.Namespace, cfg: CfgNode,
                 device: torch.device, root: str, report: dict) -> dict:
    """Run the benchmarks ``which`` in order, adding each one's results (and ``wall_s``) to
    ``report``, printing its table and rewriting ``args.out``. Each starts from the cuDNN
    autotuner setting this function found, which is restored after it: a section that turns
    the autotuner on (a training run on CUDA) leaves it off for the next one."""
    cudnn = torch.backends.cudnn.benchmark
    for name in which:
        t0 = time.perf_counter()
        try:
            res = run_benchmark(name, args, cfg, device, root, report)
        finally:
            torch.backends.cudnn.benchmark = cudnn
        res["wall_s"] = time.perf_counter() - t0
        report[name] = res
        _print_table(name, res)
        _write_report(report, args.out)
    return report


def _write_report(report: dict, path: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1, default=float)


def _report_header(argv: list[str], device: torch.device) -> dict:
    return {"machine": {"platform": platform.platform(), "processor": _cpu_name(),
                        "cpu_threads": torch.get_num_threads(),
                        "gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else None},
            "torch": torch.__version__, "device": str(device),
            "command": "python -m tools.benchmark " + " ".join(argv)}


@run_cli
def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (2 for user errors)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    check_writable_file(args.out)
    device = resolve_device(args.opts)
    which = BENCHMARKS if args.which == "all" else (args.which,)
    report = _report_header(argv, device)
    with tempfile.TemporaryDirectory(prefix="reid-bench-") as tmp:
        root = os.path.join(tmp, "mars")
        cfg = benchmark_config(args.config_file, args.opts, device, root)
        if any(b in which for b in NEEDS_IMAGES):
            write_bench_dataset(root, tuple(cfg.INPUT.SIZE_TRAIN))
        run_sections(which, args, cfg, device, root, report)
    _write_report(report, args.out)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
