"""Measure the pipeline: training step, extraction, evaluation, data loading, memory, compute.

    python -m tools.benchmark [train|extract|eval|data|memory|loss|compute|all]
        [--config_file FILE] [--out benchmark.json] [--no-speedups] [KEY VALUE ...]

Prints a table per benchmark and writes JSON (machine, torch version, device, command, then one
object per benchmark). The model is the config's (default: the paper model, ResNet-50 ATTR_TA,
T=4, 256x128) with random weights; images come from a synthetic MARS-format folder written to a
temporary directory and removed afterwards. The benchmarks live in
:mod:`tools.benchmark_pipeline` (train, extract, data, compute), :mod:`tools.benchmark_memory`,
:mod:`tools.benchmark_eval` and :mod:`tools.benchmark_losses`.
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
    bench_train,
    benchmark_config,
    write_bench_dataset,
)
from utils.checkpoint import check_writable_file
from utils.errors import run_cli

BENCHMARKS = ("train", "extract", "eval", "data", "memory", "loss", "compute")
NEEDS_IMAGES = ("train", "data", "memory")     # benchmarks reading the synthetic folder


def _print_table(name: str, res: dict) -> None:
    print(f"\n== {name} ==")
    for k, v in res.items():
        if isinstance(v, dict):
            for k2, v2 in v.items():
                print(f"  {k}.{k2:<28} {v2:.4g}" if isinstance(v2, float) else f"  {k}.{k2}: {v2}")
        elif isinstance(v, float):
            print(f"  {k:<36} {v:.4g}")
        else:
            print(f"  {k:<36} {v}")


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
    p.add_argument("--iters", type=int, default=3, help="timed training iterations")
    p.add_argument("--no-speedups", action="store_true",
                   help="train: time the step without the speed-ups (NCHW model, foreach "
                        "optimizer kernels, no cuDNN autotuner)")
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
    return args


def run_benchmark(name: str, args: argparse.Namespace, cfg: CfgNode, device: torch.device,
                  root: str, report: dict) -> dict:
    """One benchmark's results (``report`` holds the earlier ones: compute reads train's)."""
    if name == "train":
        return bench_train(cfg, device, args.iters, speedups=not args.no_speedups)
    if name == "extract":
        return bench_extract(cfg, device)
    if name == "eval":
        return run_eval_benchmark()
    if name == "data":
        return bench_data(cfg)
    if name == "memory":
        return bench_memory(args.config_file, args.opts, root)
    if name == "loss":
        return run_loss_benchmark()
    return bench_compute(cfg, device, report.get("train"))


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
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    which = BENCHMARKS if args.which == "all" else (args.which,)
    report = _report_header(argv, device)
    with tempfile.TemporaryDirectory(prefix="reid-bench-") as tmp:
        root = os.path.join(tmp, "mars")
        cfg = benchmark_config(args.config_file, args.opts, device, root)
        if any(b in which for b in NEEDS_IMAGES):
            write_bench_dataset(root, tuple(cfg.INPUT.SIZE_TRAIN))
        for name in which:
            t0 = time.perf_counter()
            res = run_benchmark(name, args, cfg, device, root, report)
            res["wall_s"] = time.perf_counter() - t0
            report[name] = res
            _print_table(name, res)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1, default=float)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
