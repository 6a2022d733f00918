"""Measure the pipeline: training step, extraction, evaluation, data loading, memory, compute.

    python -m utils.benchmark [train|extract|eval|data|memory|loss|compute|all]
        [--config_file FILE] [--out benchmark.json] [KEY VALUE ...]

Prints a table per benchmark and writes JSON (machine, torch version, device, command, then one
object per benchmark). The model is the config's (default: the paper model, ResNet-50 ATTR_TA,
T=4, 256x128) with random weights; images come from a synthetic MARS-format folder written to a
temporary directory and removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager

import torch
from yacs.config import CfgNode

from config import load_cfg
from utils.errors import run_cli

BENCHMARKS = ("train", "extract", "eval", "data", "memory", "loss", "compute")
MARS_ATTR_LENS = [[5, 6, 2, 2, 2, 2, 2, 2, 2], [9, 10, 4, 2, 2, 2, 2, 2, 2, 2, 2, 2]]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextmanager
def _timer(store: dict, key: str, device: torch.device):
    _sync(device)
    t0 = time.perf_counter()
    yield
    _sync(device)
    store[key] = store.get(key, 0.0) + time.perf_counter() - t0


def benchmark_config(config_file: str | None, opts: list[str], device: torch.device,
                     data_root: str) -> CfgNode:
    """The paper model's config for benchmarking on ``device`` (batch 8 on a CPU, 32 on a GPU)."""
    batch = 32 if device.type == "cuda" else 8
    base = ["MODEL.PRETRAIN_CHOICE", "none", "MODEL.DEVICE", device.type,
            "DATASETS.ROOT_DIR", data_root, "DATASETS.NAME", "mars",
            "SOLVER.SEQS_PER_BATCH", str(batch), "DATALOADER.NUM_INSTANCE", "4",
            "DATALOADER.SAMPLER", "softmax_triplet"]
    return load_cfg(config_file or "configs/mars_aitl.yml", base + list(opts))


def write_bench_dataset(root: str, size: tuple[int, int], ids: int = 16, frames: int = 16) -> str:
    """A synthetic MARS-format folder with frames of the benchmark's input size."""
    from data.synthetic import write_synthetic_dataset

    return str(write_synthetic_dataset(root, fmt="mars", ids=ids, tracklets=4, frames=frames,
                                       size=size, seed=0))


def _build(cfg: CfgNode, device: torch.device, num_classes: int = 625):
    from layers import make_loss
    from modeling import build_model
    from solver import make_optimizer

    model = build_model(cfg, num_classes, MARS_ATTR_LENS, load_pretrained=False).to(device)
    if cfg.MODEL.CHANNELS_LAST:
        model.to(memory_format=torch.channels_last)
    criterion = make_loss(cfg, num_classes, MARS_ATTR_LENS, feat_dim=model.feat_dim).to(device)
    optimizer = make_optimizer(cfg, model)
    return model, criterion, optimizer


def _to_device(batch, device):
    clips, pids, _, attrs = batch
    attrs = [a.to(device) for a in attrs] if isinstance(attrs, (list, tuple)) else attrs.to(device)
    return clips.to(device, non_blocking=True), pids.to(device), attrs


def bench_train(cfg: CfgNode, device: torch.device, iters: int = 3) -> dict:
    """Train-step throughput and its split: data wait, forward, loss, backward, optimizer."""
    from data import make_data_loaders

    train_loader, *_ = make_data_loaders(cfg)
    model, criterion, optimizer = _build(cfg, device)
    model.train()
    amp = device.type == "cuda" and cfg.SOLVER.FP_16
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    times: dict[str, float] = {}
    loader_iter = iter(_forever(train_loader))
    clips_done = 0
    for i in range(iters + 1):        # the first iteration warms up and is not counted
        if i == 1:
            times = {}
            clips_done = 0
        with _timer(times, "data_wait", device):
            clips, pids, attrs = _to_device(next(loader_iter), device)
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            with _timer(times, "forward", device):
                outputs = model(clips)
            with _timer(times, "loss", device):
                losses = criterion(outputs, pids, attrs)
        with _timer(times, "backward", device):
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(losses["total"]).backward()
        with _timer(times, "optimizer", device):
            scaler.step(optimizer)
            scaler.update()
        with _timer(times, "logging", device):
            torch.stack([v.detach() for v in losses.values()])   # what the trainer keeps per step
        clips_done += clips.shape[0]
    total = sum(times.values())
    compute = times["forward"] + times["backward"]
    return {
        "batch": cfg.SOLVER.SEQS_PER_BATCH, "iterations": iters,
        "step_s": total / iters, "clips_per_s": clips_done / total,
        "split_s": {k: v / iters for k, v in times.items()},
        "outside_compute_fraction": (total - compute) / total,
    }


def _forever(loader):
    epoch = 0
    while True:
        epoch += 1
        for obj in (getattr(loader, "batch_sampler", None), getattr(loader, "sampler", None)):
            if hasattr(obj, "set_epoch"):
                obj.set_epoch(epoch)
        yield from loader


# Dense clips per MARS test tracklet (T=4) at the 10/30/50/70/90th percentiles of the real
# split (tracks_test_info.mat: median 8, mean 14.3, up to 200 after the cap).
MARS_CLIPS_PER_TRACKLET = (3, 5, 8, 16, 33)


def bench_extract(cfg: CfgNode, device: torch.device) -> dict:
    """Dense extraction clips/s: ours (clips packed in TEST.CLIPS_PER_BATCH chunks, auto per
    device) against the original's one forward per tracklet with all its clips.

    Tracklets have the MARS clip counts of :data:`MARS_CLIPS_PER_TRACKLET` (random frames at
    the config's input size; decoding is measured by the ``data`` benchmark).
    """
    from engine.evaluator import clips_per_batch, extract_features

    model, _, _ = _build(cfg, device)
    h, w = cfg.INPUT.SIZE_TEST
    g = torch.Generator().manual_seed(0)
    items = [(torch.randn(c, cfg.DATASETS.SEQ_LEN, 3, h, w, generator=g), 1, 1,
              torch.zeros(1, dtype=torch.long)) for c in MARS_CLIPS_PER_TRACKLET]
    n_clips = sum(MARS_CLIPS_PER_TRACKLET)
    chunk = clips_per_batch(cfg, device)
    extract_features(model, items[:1], device, chunk)           # warm-up
    out = {"tracklets": len(items), "clips": n_clips, "clips_per_batch": chunk}
    runs = [("one_tracklet_at_a_time", None), ("batched", chunk)]
    if chunk != 128:
        runs.append(("batched_128", 128))
    for name, per_batch in runs:
        _sync(device)
        t0 = time.perf_counter()
        if per_batch is None:
            for x in items:
                extract_features(model, [x], device, clips_per_batch=x[0].shape[0])
        else:
            extract_features(model, items, device, clips_per_batch=per_batch)
        _sync(device)
        out[f"{name}_clips_per_s"] = n_clips / (time.perf_counter() - t0)
    out["speedup_batched"] = out["batched_clips_per_s"] / out["one_tracklet_at_a_time_clips_per_s"]
    return out


def bench_eval(with_loop: bool = True) -> dict:
    """CMC/mAP at MARS scale (1980 x 9330) vs the original's per-query loop."""
    from utils.benchmark_eval import run_eval_benchmark

    return run_eval_benchmark(with_loop=with_loop)


def bench_data(cfg: CfgNode, workers: tuple[int, ...] = (0, 1, 2), batches: int = 6) -> dict:
    """Train-loader clips/s from JPEG files for several worker counts, and dense test loading."""
    from data import make_data_loaders

    out = {}
    for w in workers:
        c = cfg.clone()
        c.defrost()
        c.DATALOADER.NUM_WORKERS = w
        c.freeze()
        train_loader, query_loader, _, _ = make_data_loaders(c)
        it = iter(_forever(train_loader))
        next(it)                      # start-up (workers) is not counted
        t0 = time.perf_counter()
        n = sum(next(it)[0].shape[0] for _ in range(batches))
        out[f"workers_{w}_clips_per_s"] = n / (time.perf_counter() - t0)
        del it, train_loader
    t0 = time.perf_counter()
    n = 0
    for i, (clips, *_rest) in enumerate(query_loader):
        n += clips.shape[0]
        if i == 20:
            break
    out["dense_test_clips_per_s"] = n / (time.perf_counter() - t0)
    out["clips_per_s"] = max(v for k, v in out.items() if k.startswith("workers_"))
    return out


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


def _memory_child(config_file: str | None, opts: list[str], grad_ckpt: bool, root: str) -> dict:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cfg = benchmark_config(config_file, opts + ["MODEL.GRAD_CHECKPOINT", str(grad_ckpt)], device,
                           root)
    model, criterion, optimizer = _build(cfg, device)
    b, t = cfg.SOLVER.SEQS_PER_BATCH, cfg.DATASETS.SEQ_LEN
    h, w = cfg.INPUT.SIZE_TRAIN
    clips = torch.randn(b, t, 3, h, w, device=device)
    pids = torch.arange(b // 4, device=device).repeat_interleave(4)
    attrs = [torch.zeros(b, sum(g), device=device) for g in MARS_ATTR_LENS]
    if cfg.DATASETS.ATTRIBUTE_LOSS == "mce":
        attrs = torch.zeros(b, sum(len(g) for g in MARS_ATTR_LENS), dtype=torch.long,
                            device=device)
    # Create the optimizer state and the gradients first (a step on zero gradients), so that
    # the measured peak is what one training step adds: activations and their gradients.
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device) / 2**20
        torch.cuda.reset_peak_memory_stats(device)
    else:
        base = _current_rss_mb()
    losses = criterion(model(clips), pids, attrs)
    losses["total"].backward()
    optimizer.step()
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else _rss_mb()
    return {"peak_mb": peak, "baseline_mb": base, "step_mb": peak - base}


def bench_memory(config_file: str | None, opts: list[str], root: str) -> dict:
    """Peak memory of a training step with and without MODEL.GRAD_CHECKPOINT (fresh processes)."""
    out = {}
    for flag in (False, True):
        cmd = [sys.executable, "-m", "utils.benchmark", "_memory_child", "--ckpt", str(flag),
               "--root", root, "--config_file", config_file or "", *opts]
        r = subprocess.run(cmd, capture_output=True, text=True, check=False,
                           cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        if r.returncode != 0:
            raise RuntimeError(f"memory benchmark child failed:\n{r.stderr[-2000:]}")
        res = json.loads(r.stdout.strip().splitlines()[-1])
        key = "checkpointed" if flag else "plain"
        out[f"peak_mb_{key}"] = res["step_mb"]
        out[f"process_peak_mb_{key}"] = res["peak_mb"]
    out["reduction"] = 1 - out["peak_mb_checkpointed"] / out["peak_mb_plain"]
    out["note"] = ("peak_mb_* = memory a training step adds over weights, gradients and "
                   "optimizer state (CPU: max RSS; GPU: max allocated)")
    return out


def bench_loss() -> dict:
    """Triplet + 2 x AITL forward/backward vs the original's per-sample loops."""
    from utils.benchmark_losses import run_loss_benchmark

    return run_loss_benchmark()


def matmul_gflops(device: torch.device, n: int = 2048, repeats: int = 5) -> float:
    """Measured float32 matmul rate of this device (GFLOP/s)."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    a @ b
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - t0) / 1e9


def bench_compute(cfg: CfgNode, device: torch.device, train: dict | None) -> dict:
    """GFLOPs per clip, and the achieved GFLOP/s of the train step against the matmul rate."""
    from modeling import build_model
    from utils.model_info import count_flops

    model = build_model(cfg, 625, MARS_ATTR_LENS, load_pretrained=False)
    h, w = cfg.INPUT.SIZE_TRAIN
    flops = count_flops(model, (1, cfg.DATASETS.SEQ_LEN, 3, h, w))
    gflops_clip = flops["flops"] / 1e9
    out = {"gflops_per_clip": gflops_clip, "gmacs_per_clip": flops["macs"] / 1e9,
           "matmul_gflops_per_s": matmul_gflops(device)}
    if train:
        # forward + backward ~ 3x the forward FLOPs
        out["train_achieved_gflops_per_s"] = 3 * gflops_clip * train["clips_per_s"]
        out["train_fraction_of_matmul_rate"] = (out["train_achieved_gflops_per_s"]
                                                / out["matmul_gflops_per_s"])
    return out


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
    """Command line of ``python -m utils.benchmark``."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("which", nargs="?", default="all",
                   help=f"one of {', '.join(BENCHMARKS + ('all',))} (default: all)")
    p.add_argument("--config_file", default="", metavar="FILE",
                   help="model/input config (default: configs/mars_aitl.yml)")
    p.add_argument("--out", default="benchmark.json", metavar="FILE")
    p.add_argument("--iters", type=int, default=3, help="timed training iterations")
    p.add_argument("opts", nargs="*", metavar="KEY VALUE",
                   help="config overrides, e.g. MODEL.NAME resnet18")
    return p


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Options may come before or after the benchmark name and the ``KEY VALUE`` overrides."""
    from engine.defaults import CONFIG_KEY, parse_command_line

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


@run_cli
def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (2 for user errors)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "_memory_child":
        c = argparse.ArgumentParser()
        c.add_argument("--ckpt")
        c.add_argument("--root")
        c.add_argument("--config_file", default="")
        c.add_argument("opts", nargs=argparse.REMAINDER)
        a = c.parse_args(argv[1:])
        print(json.dumps(_memory_child(a.config_file, a.opts, a.ckpt == "True", a.root)))
        return 0
    args = parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    which = BENCHMARKS if args.which == "all" else (args.which,)
    report = {"machine": {"platform": platform.platform(), "processor": _cpu_name(),
                          "cpu_threads": torch.get_num_threads(),
                          "gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else None},
              "torch": torch.__version__, "device": str(device),
              "command": "python -m utils.benchmark " + " ".join(argv)}
    with tempfile.TemporaryDirectory(prefix="reid-bench-") as tmp:
        root = os.path.join(tmp, "mars")
        cfg = benchmark_config(args.config_file, args.opts, device, root)
        if any(b in which for b in ("train", "data", "memory")):
            write_bench_dataset(root, tuple(cfg.INPUT.SIZE_TRAIN))
        for name in which:
            t0 = time.perf_counter()
            if name == "train":
                res = bench_train(cfg, device, args.iters)
            elif name == "extract":
                res = bench_extract(cfg, device)
            elif name == "eval":
                res = bench_eval()
            elif name == "data":
                res = bench_data(cfg)
            elif name == "memory":
                res = bench_memory(args.config_file, args.opts, root)
            elif name == "loss":
                res = bench_loss()
            else:
                res = bench_compute(cfg, device, report.get("train"))
            res["wall_s"] = time.perf_counter() - t0
            report[name] = res
            _print_table(name, res)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1, default=float)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
