"""The pipeline benchmarks of ``python -m tools.benchmark``: extraction, data, compute, and the
helpers of the training-step benchmark (:mod:`tools.benchmark_train`).

Each ``bench_*`` function returns one JSON object of the report. The training step timed is the
real one, :meth:`engine.Trainer.run_step` of a Trainer built as ``main_baseline.py`` builds it;
extraction runs :func:`engine.extract_features`. The model has the dataset's standard classifier
width and attribute class counts (:func:`tools.model_info.dataset_facts`) and random weights.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from types import SimpleNamespace

import torch
from PIL import Image
from yacs.config import CfgNode

from data import make_data_loaders
from data.transforms import read_image
from engine import Trainer, amp_settings, configure_backends, evaluation_dtype, extract_features
from engine.defaults import load_cfg
from engine.evaluator import clips_per_batch, inference_model
from engine.precision import dtype_name
from modeling import VideoBaseline, build_model
from solver import make_scheduler
from tools.model_info import count_flops, dataset_facts
from tools.synthetic import ensure_dataset, write_synthetic_dataset

# Dense clips per MARS test tracklet (T=4) at the 10/30/50/70/90th percentiles of the real
# split (tracks_test_info.mat: median 8, mean 14.3, up to 200 after the cap).
MARS_CLIPS_PER_TRACKLET = (3, 5, 8, 16, 33)
# The extraction benchmark times at least this many full forwards of the configured chunk
# (the MARS clip counts are repeated: 8 times for CUDA's 128-clip chunks, once on a CPU).
MIN_TIMED_CHUNKS = 4


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA; nothing elsewhere)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextmanager
def _timed(store: dict[str, float], key: str, device: torch.device):
    sync(device)
    t0 = time.perf_counter()
    yield
    sync(device)
    store[key] = store.get(key, 0.0) + time.perf_counter() - t0


def phase_timer(store: dict[str, float], device: torch.device
                ) -> Callable[[str], AbstractContextManager]:
    """The ``timer`` of :meth:`engine.Trainer.run_step`: adds each phase's seconds to
    ``store[phase]``, synchronising the device before and after so that the phases add up."""
    return lambda phase: _timed(store, phase, device)


def benchmark_config(config_file: str | None, opts: list[str], device: torch.device,
                     data_root: str) -> CfgNode:
    """The paper model's config for benchmarking on ``device`` (batch 8 on a CPU, 32 on a GPU),
    with the synthetic MARS folder ``data_root`` as its dataset; ``opts`` come last."""
    batch = 32 if device.type == "cuda" else 8
    base = ["MODEL.PRETRAIN_CHOICE", "none", "MODEL.DEVICE", device.type,
            "DATASETS.ROOT_DIR", data_root, "DATASETS.NAME", "mars",
            "SOLVER.SEQS_PER_BATCH", str(batch), "DATALOADER.NUM_INSTANCE", "4",
            "DATALOADER.SAMPLER", "softmax_triplet"]
    return load_cfg(config_file or "configs/mars_aitl.yml", base + list(opts))


def resolve_device(opts: list[str]) -> torch.device:
    """The benchmark's device: ``MODEL.DEVICE`` of the ``KEY VALUE`` overrides when they set it,
    else CUDA when available, else the CPU."""
    for key, value in zip(opts[::2], opts[1::2]):
        if key == "MODEL.DEVICE":
            return torch.device(value)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def with_overrides(cfg: CfgNode, overrides: Mapping[str, object]) -> CfgNode:
    """A frozen clone of ``cfg`` with each dotted key of ``overrides`` set to its value (the
    config itself is left as it is). Raises KeyError for a key the config does not have."""
    c = cfg.clone()
    c.defrost()
    for key, value in overrides.items():
        *path, name = key.split(".")
        node = c
        for part in path:
            node = node[part]
        if name not in node:
            raise KeyError(f"{key}: no such config key")
        node[name] = value
    c.freeze()
    return c


def write_bench_dataset(root: str, size: tuple[int, int], ids: int = 16, frames: int = 16) -> str:
    """A synthetic MARS-format folder at ``root`` with frames of the benchmark's input size."""
    return str(write_synthetic_dataset(root, fmt="mars", ids=ids, tracklets=4, frames=frames,
                                       size=size, seed=0))


def build_bench_model(cfg: CfgNode, device: torch.device,
                      attr_lens: list[list[int]] | None) -> VideoBaseline:
    """The config's model with random weights on ``device`` (MODEL.CHANNELS_LAST resolved for
    it): the standard classifier width of DATASETS.NAME and the attribute class counts
    ``attr_lens``."""
    num_classes = dataset_facts(cfg.DATASETS.NAME)[0]
    return build_model(cfg, num_classes, attr_lens, load_pretrained=False,
                       device=device).to(device)


def without_speedups(cfg: CfgNode) -> CfgNode:
    """The config with the speed-ups that are config keys switched off (MODEL.CHANNELS_LAST)."""
    return _override(cfg, "MODEL.CHANNELS_LAST", False)


def foreach_kernels(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """The same optimizer (parameters, groups, settings) with the ``foreach`` kernels that the
    project used before its fused kernels (the "no speed-ups" baseline)."""
    groups = [{k: v for k, v in g.items() if k not in ("fused", "foreach")}
              for g in optimizer.param_groups]
    return type(optimizer)(groups, foreach=True)


def build_trainer(cfg: CfgNode, device: torch.device, train_loader: Iterable | None = None,
                  dataset=None, speedups: bool = True) -> Trainer:
    """A :class:`engine.Trainer` built like ``main_baseline.py``'s (model, criterion,
    optimizers, scheduler; no run folder; the cuDNN setting of a training run) for
    ``train_loader`` and its parsed ``dataset`` (None: the attribute class counts of
    DATASETS.NAME's class). ``speedups`` False: NCHW model, ``foreach`` optimizer kernels and
    no cuDNN autotuner, the step before the speed-ups."""
    num_classes, attr_lens = dataset_facts(cfg.DATASETS.NAME)
    if dataset is not None:
        attr_lens = dataset.attr_lens
    if not speedups:
        cfg = without_speedups(cfg)
    configure_backends(device, training=speedups)
    model = build_bench_model(cfg, device, attr_lens)
    # what the Trainer reads of a dataset, with the standard classifier width of the model
    facts = SimpleNamespace(num_train_pids=num_classes, attr_lens=attr_lens,
                            attr_names=getattr(dataset, "attr_names", None))
    trainer = Trainer.from_config(cfg, model, (train_loader, None, None), facts, device, None)
    if not speedups:
        trainer.optimizer = foreach_kernels(trainer.optimizer)
        trainer.scheduler = make_scheduler(cfg, trainer.optimizer)
    return trainer


def forever(loader: Iterable) -> Iterator:
    """The loader's batches epoch after epoch (setting the samplers' epoch, as the trainer)."""
    epoch = 0
    while True:
        epoch += 1
        for obj in (getattr(loader, "batch_sampler", None), getattr(loader, "sampler", None)):
            if hasattr(obj, "set_epoch"):
                obj.set_epoch(epoch)
        yield from loader


def optimizer_kernels(optimizer: torch.optim.Optimizer) -> str:
    """"fused", "foreach" or "default" (torch's choice): the optimizer's update kernels."""
    group = optimizer.param_groups[0]
    return "fused" if group.get("fused") else "foreach" if group.get("foreach") else "default"


def compiled_graphs() -> int:
    """Graphs torch.compile (Dynamo) has compiled in this process so far; a recompilation (a
    new input shape, a failed guard) adds one."""
    from torch._dynamo.utils import counters  # loads the compiler: on use

    return int(counters["stats"]["unique_graphs"])


def bench_tracklets(chunk: int, min_chunks: int = MIN_TIMED_CHUNKS) -> list[int]:
    """Clip counts of the extraction benchmark's tracklets: :data:`MARS_CLIPS_PER_TRACKLET`,
    repeated until they fill at least ``min_chunks`` forwards of ``chunk`` clips (once for a
    CPU's 2-clip chunks; 8 times, 520 clips, for CUDA's 128)."""
    per_round = sum(MARS_CLIPS_PER_TRACKLET)
    rounds = max(1, math.ceil(min_chunks * chunk / per_round))
    return list(MARS_CLIPS_PER_TRACKLET) * rounds


def bench_extract(cfg: CfgNode, device: torch.device) -> dict:
    """Dense extraction clips/s: ours (:func:`engine.extract_features` with the config's model,
    MODEL.CHANNELS_LAST resolved for the device, BatchNorms folded, clips packed in
    TEST.CLIPS_PER_BATCH chunks, auto per device, TEST.COMPILE as configured) against the
    original's way (the same weights in the NCHW layout, unfolded, one forward per tracklet
    with all its clips), and the largest feature difference between the two. Also timed: forwards
    of up to 128 clips, and the compiled forward (``batched_compiled``, its compilation apart in
    ``batched_compiled_compile_s``) when TEST.COMPILE is off.

    Precision: ours runs in the evaluation's (:func:`engine.evaluation_dtype`: bfloat16 autocast
    on a CPU with native bf16 under SOLVER.FP_16 True, CPU_PRECISION auto), the original's way
    in the original's (float32 on a CPU; on CUDA the training autocast, as apex O1 evaluated).
    When the two differ, ``batched_float32`` times ours in float32 too. ``max_feature_diff`` is
    the largest difference between the original's features and ours computed in its precision
    (float rounding); ``max_feature_diff_<dtype>`` and ``min_feature_cosine_<dtype>`` compare
    the features of the other precision with them.

    Tracklets have the MARS clip counts of :data:`MARS_CLIPS_PER_TRACKLET`, repeated to fill
    :data:`MIN_TIMED_CHUNKS` chunks (:func:`bench_tracklets`; random frames at the config's
    input size; decoding is measured by the ``data`` benchmark). Autocast is the evaluation's
    (:func:`engine.amp_settings`), the cuDNN autotuner an evaluation-only run's (off).

    Each run is warmed up, outside the timed region, on one forward of the size the timed run
    starts with (its chunk, or all the clips when they are fewer): a compiled forward compiles
    for that size and pads the smaller last forward, so nothing compiles while timed
    (``<run>_timed_compilations`` counts the graphs compiled inside the timed region: 0). The
    one-tracklet-at-a-time run warms up on its first tracklet.
    """
    configure_backends(device, training=False)
    attr_lens = dataset_facts(cfg.DATASETS.NAME)[1]
    model = build_bench_model(cfg, device, attr_lens)
    original = build_bench_model(without_speedups(cfg), device, attr_lens)
    original.load_state_dict(model.state_dict())
    amp_dtype = evaluation_dtype(cfg, device)
    original_dtype = evaluation_dtype(_override(cfg, "SOLVER.CPU_PRECISION", "float32"), device)
    chunk = clips_per_batch(cfg, device)
    counts = bench_tracklets(chunk)
    h, w = cfg.INPUT.SIZE_TEST
    g = torch.Generator().manual_seed(0)

    def tracklet(clips: int) -> tuple:
        return (torch.randn(clips, cfg.DATASETS.SEQ_LEN, 3, h, w, generator=g), 1, 1,
                torch.zeros(1, dtype=torch.long))

    items = [tracklet(c) for c in counts]
    n_clips = sum(counts)
    out = {"tracklets": len(items), "clips": n_clips, "clips_per_batch": chunk,
           "channels_last": model.channels_last, "compile": cfg.TEST.COMPILE,
           "amp_dtype": dtype_name(amp_dtype), "original_amp_dtype": dtype_name(original_dtype),
           "cudnn_benchmark": torch.backends.cudnn.benchmark}
    # (name, model, clips per forward (None: one forward per tracklet), compiled, autocast)
    runs = [("one_tracklet_at_a_time", original, None, False, original_dtype),
            ("batched", model, chunk, cfg.TEST.COMPILE, amp_dtype)]
    if amp_dtype != original_dtype:
        runs.append(("batched_float32", model, chunk, cfg.TEST.COMPILE, original_dtype))
    if chunk != 128:
        runs.append(("batched_128", model, 128, False, amp_dtype))
    if not cfg.TEST.COMPILE:
        runs.append(("batched_compiled", model, chunk, True, amp_dtype))
    feats = {}
    for name, net, per_batch, compiled, dtype in runs:
        ours = per_batch is not None
        prepared = inference_model(net, fold_bn=ours, compile_model=compiled)
        # warm-up (and compilation) on the first timed forward's shape
        warm = [tracklet(min(per_batch, n_clips))] if ours else items[:1]
        t0 = time.perf_counter()
        extract_features(prepared, warm, device, per_batch or warm[0][0].shape[0],
                         amp_dtype=dtype, fold_bn=False)
        sync(device)
        if compiled:
            out[f"{name}_compile_s"] = time.perf_counter() - t0
        graphs = compiled_graphs()
        t0 = time.perf_counter()
        if ours:
            feats[name] = extract_features(prepared, items, device, per_batch,
                                           amp_dtype=dtype, fold_bn=False)["feats"]
        else:
            feats[name] = torch.cat([
                extract_features(prepared, [x], device, x[0].shape[0], amp_dtype=dtype,
                                 fold_bn=False)["feats"] for x in items])
        sync(device)
        out[f"{name}_clips_per_s"] = n_clips / (time.perf_counter() - t0)
        if compiled:
            out[f"{name}_timed_compilations"] = compiled_graphs() - graphs
    base = out["one_tracklet_at_a_time_clips_per_s"]
    out["speedup_batched"] = out["batched_clips_per_s"] / base
    if "batched_compiled_clips_per_s" in out:
        out["speedup_batched_compiled"] = out["batched_compiled_clips_per_s"] / base
    if "batched_float32_clips_per_s" in out:
        out["speedup_batched_float32"] = out["batched_float32_clips_per_s"] / base
    ref = feats["one_tracklet_at_a_time"]
    same = [feats[name] for name, *_, dtype in runs if dtype == original_dtype]
    out["max_feature_diff"] = max(float((f - ref).abs().max()) for f in same)
    out["max_feature_abs"] = float(ref.abs().max())
    other = [feats[name] for name, *_, dtype in runs if dtype != original_dtype]
    if other:
        key = dtype_name(amp_dtype)
        out[f"max_feature_diff_{key}"] = max(float((f - ref).abs().max()) for f in other)
        out[f"min_feature_cosine_{key}"] = min(
            float(torch.nn.functional.cosine_similarity(f.float(), ref.float()).min())
            for f in other)
    return out


def _override(cfg: CfgNode, key: str, value) -> CfgNode:
    """A frozen copy of ``cfg`` with ``key`` (dotted) set to ``value``."""
    return with_overrides(cfg, {key: value})


def _with_workers(cfg: CfgNode, workers: int) -> CfgNode:
    return _override(cfg, "DATALOADER.NUM_WORKERS", workers)


@contextmanager
def _threads(n: int):
    """Run the block with ``n`` intra-op threads (as a loader worker: one), then restore."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def decode_rate(paths: list[str], repeats: int = 3) -> dict[str, float]:
    """Frames/s of decoding ``paths`` to RGB in this process, nothing else (best of ``repeats``
    passes, after one that warms the file cache): :func:`data.transforms.read_image` (the
    pipeline's decoder, libjpeg-turbo for JPEG) and PIL's ``Image.open(p).convert("RGB")``."""
    def pil(p: str) -> None:
        with Image.open(p) as img:
            img.convert("RGB")

    out = {}
    decoders = (("decode_only_frames_per_s", read_image), ("pil_decode_frames_per_s", pil))
    for name, decode in decoders:
        best = float("inf")
        for _ in range(repeats + 1):
            t0 = time.perf_counter()
            for p in paths:
                decode(p)
            best = min(best, time.perf_counter() - t0)
        out[name] = len(paths) / best
    return out


def _loader_clips_per_s(loader: Iterable, batches: int, repeats: int = 1) -> float:
    """Clips/s of ``batches`` batches of an epoch-cycling train loader (best of ``repeats``
    runs; start-up and one batch, which starts the workers, are not counted)."""
    it = forever(loader)
    next(it)
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        n = sum(next(it)[0].shape[0] for _ in range(batches))
        best = max(best, n / (time.perf_counter() - t0))
    return best


def bench_data(cfg: CfgNode, workers: tuple[int, ...] = (0, 1, 2), batches: int = 6) -> dict:
    """The data pipeline against the JPEG decoder, train-loader clips/s for several worker
    counts, and dense test loading.

    ``decode_only_frames_per_s`` decodes the training split's files to RGB in this process
    (:func:`decode_rate`); ``train_frames_per_s_0_workers`` runs the train loader in this
    process (frames = clips x T), one intra-op thread for both, as in a loader worker;
    ``pipeline_to_decode_ratio`` is their ratio (1 would be a pipeline as fast as decoding).
    """
    ensure_dataset(cfg)
    train_loader, query_loader, _, dataset = make_data_loaders(_with_workers(cfg, 0))
    paths = [p for t in dataset.train for p in t.img_paths]
    out: dict[str, float] = {}
    with _threads(1):
        out.update(decode_rate(paths))
        clips_per_s = _loader_clips_per_s(train_loader, batches, repeats=3)
    out["train_frames_per_s_0_workers"] = clips_per_s * cfg.DATASETS.SEQ_LEN
    out["pipeline_to_decode_ratio"] = (out["train_frames_per_s_0_workers"]
                                       / out["decode_only_frames_per_s"])
    for w in workers:
        loader = (train_loader if w == 0
                  else make_data_loaders(_with_workers(cfg, w), dataset)[0])
        out[f"workers_{w}_clips_per_s"] = _loader_clips_per_s(loader, batches)
        del loader
    t0 = time.perf_counter()
    n = 0
    for i, (clips, *_rest) in enumerate(query_loader):
        n += clips.shape[0]
        if i == 20:
            break
    out["dense_test_clips_per_s"] = n / (time.perf_counter() - t0)
    out["clips_per_s"] = max(v for k, v in out.items() if k.startswith("workers_"))
    return out


def matmul_gflops(device: torch.device, dtype: torch.dtype = torch.float32, n: int = 2048,
                  repeats: int = 5) -> float:
    """Measured matmul rate of this device in ``dtype`` (GFLOP/s): ``n`` x ``n`` products of
    ``dtype`` tensors, the kernels an autocast region runs for a float32 matmul in ``dtype``."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    a @ b
    sync(device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - t0) / 1e9


def bench_compute(cfg: CfgNode, device: torch.device, train: dict | None) -> dict:
    """GFLOPs per clip, the matmul rate in each precision a train step ran in, and each train
    variant's achieved GFLOP/s against the matmul rate of its own precision.

    Args:
        cfg: the benchmark's config (model, input size).
        device: where to measure the matmul rate.
        train: the ``train`` benchmark's report (:func:`tools.benchmark_train.bench_train`),
            or None: then the matmul rate is measured in the precision the config's training
            step would run in (:func:`engine.amp_settings`) and no fraction is reported.

    Returns:
        dict with ``gflops_per_clip``, ``gmacs_per_clip``, ``matmul_gflops_per_s_<dtype>`` for
        each precision (e.g. ``matmul_gflops_per_s_bfloat16``) and, with ``train``, ``train``:
        ``{variant: {"amp_dtype", "achieved_gflops_per_s" (3 x forward FLOPs x clips/s),
        "fraction_of_matmul_rate" (against the matmul rate in amp_dtype)}}``.
    """
    num_classes, attr_lens = dataset_facts(cfg.DATASETS.NAME)
    model = build_model(cfg, num_classes, attr_lens, load_pretrained=False)
    h, w = cfg.INPUT.SIZE_TRAIN
    flops = count_flops(model, (1, cfg.DATASETS.SEQ_LEN, 3, h, w))
    gflops_clip = flops["flops"] / 1e9
    out = {"gflops_per_clip": gflops_clip, "gmacs_per_clip": flops["macs"] / 1e9}
    variants = (train or {}).get("variants", {})
    dtypes = sorted({v["amp_dtype"] for v in variants.values()}) or [
        dtype_name(amp_settings(cfg, device)[0])]
    rates = {d: matmul_gflops(device, getattr(torch, d)) for d in dtypes}
    out.update({f"matmul_gflops_per_s_{d}": r for d, r in rates.items()})
    if variants:
        out["train"] = {}
        for name, v in variants.items():
            achieved = 3 * gflops_clip * v["clips_per_s"]   # forward + backward ~ 3x forward
            out["train"][name] = {"amp_dtype": v["amp_dtype"], "achieved_gflops_per_s": achieved,
                                  "fraction_of_matmul_rate": achieved / rates[v["amp_dtype"]]}
    return out
