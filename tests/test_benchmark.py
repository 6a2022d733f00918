"""The benchmark command (tools.benchmark): its figures against what they measure, tiny model."""

import argparse
import contextlib
import json
import os

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import tools.benchmark_pipeline as pipeline
from engine import Trainer
from modeling import build_model
from tools import benchmark, benchmark_memory
from tools.benchmark_pipeline import (
    MARS_CLIPS_PER_TRACKLET,
    bench_compute,
    bench_tracklets,
    benchmark_config,
    matmul_gflops,
    resolve_device,
    with_overrides,
)
from tools.benchmark_train import DEFAULT_VARIANTS, TRAIN_PHASES, TRAIN_VARIANTS
from tools.model_info import count_flops, dataset_facts

TINY = ["MODEL.NAME", "resnet18", "INPUT.SIZE_TRAIN", "[32, 16]", "INPUT.SIZE_TEST", "[32, 16]",
        "DATALOADER.NUM_WORKERS", "0"]
CPU = torch.device("cpu")


def run(tmp_path, which: str, *args: str) -> dict:
    """``python -m tools.benchmark WHICH ...``; returns the report it wrote."""
    out = tmp_path / f"{which}.json"
    assert benchmark.main([which, *TINY, *args, "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["device"] == "cpu" and report["torch"] == torch.__version__
    assert report["command"].startswith(f"python -m tools.benchmark {which} ")
    return report


def _spy_steps(monkeypatch, extra=None) -> list[dict]:
    """Record every Trainer.run_step call: the trainer, its config, the phases it timed and
    the cuDNN autotuner flag it ran with; ``extra(trainer, calls)`` runs at the start of each
    step's timed forward phase."""
    calls: list[dict] = []
    real_step = Trainer.run_step

    def spy(self, batch, timer):
        call = {"cfg": self.cfg, "phases": [], "cudnn": torch.backends.cudnn.benchmark,
                "trainer": self}
        calls.append(call)

        @contextlib.contextmanager
        def phase(name):
            call["phases"].append(name)
            with timer(name):
                if name == "forward" and extra is not None:
                    extra(self, calls)
                yield

        return real_step(self, batch, phase)

    monkeypatch.setattr(Trainer, "run_step", spy)
    return calls


def test_train_variants_interleaved_side_by_side(tmp_path, monkeypatch, capsys):
    calls = _spy_steps(monkeypatch)
    rep = run(tmp_path, "train", "--steps", "2", "--variants", "fp32_nchw,bf16",
              "SOLVER.SEQS_PER_BATCH", "8")
    res = rep["train"]
    assert res["order"] == ["fp32_nchw", "bf16"] and res["baseline"] == "fp32_nchw"
    assert list(res["variants"]) == ["fp32_nchw", "bf16"] and res["steps"] == 2
    # one warm-up step of each, then A B A B: the step's own config decides each call
    seen = [(c["cfg"].SOLVER.FP_16, c["cfg"].MODEL.CHANNELS_LAST) for c in calls]
    assert seen == [(False, False), (True, True)] * 3
    assert all(c["phases"] == list(TRAIN_PHASES[1:]) for c in calls)
    # the overrides went to clones: both trainers kept their own config
    assert calls[0]["trainer"] is not calls[1]["trainer"]
    fp32, bf16 = res["variants"]["fp32_nchw"], res["variants"]["bf16"]
    assert (fp32["amp_dtype"], fp32["channels_last"]) == ("float32", False)
    assert (bf16["amp_dtype"], bf16["channels_last"]) == ("bfloat16", True)  # CPU_PRECISION
    assert fp32["precision_as_asked"] and bf16["precision_as_asked"]
    assert calls[1]["trainer"].amp_dtype == torch.bfloat16 and calls[0]["trainer"].amp_dtype is None
    for v in (fp32, bf16):
        assert v["steps"] == 2 and v["clips"] == 8 * 2 and len(v["steps_s"]) == 2
        split = v["split_s"]
        assert list(split) == list(TRAIN_PHASES) and all(x >= 0 for x in split.values())
        assert v["step_s"] == pytest.approx(sum(split.values()))
        assert v["step_s"] == pytest.approx(sum(v["steps_s"]) / 2)
        assert v["clips_per_s"] == pytest.approx(v["clips"] / (v["step_s"] * 2))
        assert v["outside_compute_fraction"] == pytest.approx(
            1 - (split["forward"] + split["backward"]) / v["step_s"])
        assert v["first_step_s"] > 0 and v["compile"] is False and "compile_s" not in v
        assert v["optimizer_kernels"] == "fused" and v["cudnn_benchmark"] is False
    assert fp32["speedup"] == 1.0
    assert bf16["speedup"] == pytest.approx(fp32["step_s"] / bf16["step_s"])
    # the printed table: a row per variant with its figures
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()
            if line.strip().startswith(("fp32_nchw ", "bf16 "))}
    assert rows["bf16"][1:4] == ["bfloat16", "NHWC", "no"]
    assert rows["bf16"][6] == f"{bf16['speedup']:.2f}x"
    assert float(rows["fp32_nchw"][4]) == pytest.approx(fp32["clips_per_s"], rel=1e-2)


def test_train_sets_each_variants_cudnn_flag_before_its_steps(tmp_path, monkeypatch):
    # as on CUDA: the autotuner on for a training run, off without the speed-ups
    monkeypatch.setattr(pipeline, "configure_backends",
                        lambda device, training: setattr(torch.backends.cudnn, "benchmark",
                                                         training))
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    calls = _spy_steps(monkeypatch)
    res = run(tmp_path, "train", "--steps", "1", "--variants", "fp32,no_speedups")["train"]
    flags = [(c["cfg"].SOLVER.COMPILE, c["trainer"].optimizer.param_groups[0].get("foreach"),
              c["cudnn"]) for c in calls]
    # fp32 was built first (flag on), no_speedups second (flag off): each runs with its own
    assert [f[2] for f in flags] == [True, False, True, False]
    assert res["variants"]["fp32"]["cudnn_benchmark"] is True
    assert res["variants"]["no_speedups"]["cudnn_benchmark"] is False
    assert torch.backends.cudnn.benchmark is False                   # restored afterwards


def test_train_without_speedups(tmp_path, capsys):
    res = run(tmp_path, "train", "--iters", "1", "--no-speedups", "SOLVER.SEQS_PER_BATCH",
              "8")["train"]
    assert res["order"] == ["no_speedups"] and res["baseline"] == "no_speedups"
    assert list(res["variants"]) == ["no_speedups"]             # exactly the variant asked for
    v = res["variants"]["no_speedups"]
    assert (v["channels_last"], v["optimizer_kernels"], v["cudnn_benchmark"]) == (
        False, "foreach", False)
    assert v["amp_dtype"] == "float32" and v["steps"] == 1 and v["clips"] == 8
    # the derived figures are those of the measured ones
    assert v["steps_s"] == [v["step_s"]] and v["speedup"] == 1.0
    assert v["step_s"] == pytest.approx(sum(v["split_s"].values()))
    assert v["clips_per_s"] == pytest.approx(8 / v["step_s"])
    rows = [line.split() for line in capsys.readouterr().out.splitlines()
            if line.strip().startswith("no_speedups ")]
    assert len(rows) == 1 and float(rows[0][4]) == pytest.approx(v["clips_per_s"], rel=1e-2)


class FakeClock:
    """A ``time`` module for the phase timer: each reading is 0.05 s after the last, so every
    phase lasts 0.05 s, plus what ``advance`` adds (a deterministic stand-in for slow work)."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self) -> float:
        self.now += 0.05
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_compile_time_is_the_first_compiled_steps_extra(tmp_path, monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(pipeline, "time", clock)

    def slow_first_compiled_step(trainer, calls):
        if trainer.cfg.SOLVER.COMPILE and sum(c["trainer"] is trainer for c in calls) == 1:
            clock.advance(1.0)                    # one second more, inside its timed forward

    calls = _spy_steps(monkeypatch, slow_first_compiled_step)
    res = run(tmp_path, "train", "--steps", "2", "--variants", "fp32,fp32_compile")["train"]
    assert [c["cfg"].SOLVER.COMPILE for c in calls] == [False, True] * 3
    eager, compiled = res["variants"]["fp32"], res["variants"]["fp32_compile"]
    phases = len(TRAIN_PHASES) * 0.05                 # every step: six phases of 0.05 s
    assert eager["steps_s"] == pytest.approx([phases] * 2)
    assert eager["first_step_s"] == pytest.approx(phases) and "compile_s" not in eager
    assert compiled["steps_s"] == pytest.approx([phases] * 2)
    assert compiled["first_step_s"] == pytest.approx(phases + 1.0)
    assert compiled["compile"] is True and compiled["compile_s"] == pytest.approx(1.0)
    assert compiled["speedup"] == pytest.approx(1.0)
    assert compiled["timed_compilations"] == 0        # nothing recompiles once warmed up


def test_variants_option(capsys):
    args = benchmark.parse_args(["train", "--variants", "bf16,fp32_nchw", "--steps", "4"])
    assert args.variants == ["bf16", "fp32_nchw"] and args.steps == 4
    assert benchmark.parse_args(["train"]).variants is None           # the device's default
    assert benchmark.parse_args(["train", "--variants", "all"]).variants == list(TRAIN_VARIANTS)
    args = benchmark.parse_args(["train", "--variants", "fp32", "--no-speedups"])
    assert args.variants == ["fp32", "no_speedups"]
    for bad in (["--variants", "fp32,bf15"], ["--steps", "0"]):
        with pytest.raises(SystemExit) as e:
            benchmark.main(["train", *bad])
        assert e.value.code == 2
    assert "unknown train variant(s) 'bf15'" in capsys.readouterr().err


def test_default_variants_cover_precision_layout_and_compile():
    for device in ("cpu", "cuda"):
        variants = [TRAIN_VARIANTS[n] for n in DEFAULT_VARIANTS[device]]
        cfg = benchmark_config(None, TINY, torch.device(device), "/nonexistent")
        combos = {(with_overrides(cfg, v.overrides).SOLVER.FP_16 and v.precision,
                   with_overrides(cfg, v.overrides).MODEL.CHANNELS_LAST,
                   with_overrides(cfg, v.overrides).SOLVER.COMPILE) for v in variants}
        half = "bfloat16" if device == "cpu" else "float16"
        assert {(False, False, False), (half, True, False), (half, False, False),
                ("bfloat16", True, False)} <= combos
        assert any(c[2] for c in combos) and DEFAULT_VARIANTS[device][0] == "fp32_nchw"
    assert "fp16" not in DEFAULT_VARIANTS["cpu"]         # float16 on a CPU: slower than float32


def test_overrides_apply_to_a_frozen_clone(tmp_path):
    cfg = benchmark_config(None, TINY, CPU, str(tmp_path))
    c = with_overrides(cfg, TRAIN_VARIANTS["bf16_compile"].overrides)
    assert (c.SOLVER.FP_16, c.SOLVER.CPU_PRECISION, c.SOLVER.AMP_DTYPE, c.SOLVER.COMPILE,
            c.MODEL.CHANNELS_LAST) == (True, "bfloat16", "bfloat16", True, True)
    assert (cfg.SOLVER.CPU_PRECISION, cfg.SOLVER.COMPILE) == ("auto", False)   # untouched
    assert c.is_frozen() and cfg.is_frozen()
    with pytest.raises(KeyError):
        with_overrides(cfg, {"SOLVER.NO_SUCH_KEY": 1})


def test_sections_restore_the_cudnn_flag(monkeypatch):
    seen = {}

    def train_on_cuda(*args):         # what the train section does on CUDA
        torch.backends.cudnn.benchmark = True
        return {}

    def extract(cfg, device):
        seen["extract"] = torch.backends.cudnn.benchmark
        return {}

    monkeypatch.setattr(benchmark, "bench_train", train_on_cuda)
    monkeypatch.setattr(benchmark, "bench_extract", extract)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    args = argparse.Namespace(steps=1, variants=None, out=os.devnull)
    report = benchmark.run_sections(("train", "extract"), args, None, CPU, "", {})
    assert seen["extract"] is False and torch.backends.cudnn.benchmark is False
    assert set(report) == {"train", "extract"}


def test_extract_and_data(tmp_path):
    # chunks of 8 clips: more than the first tracklet's 3, so a warm-up on it would compile
    # the wrong shape and the timed run would recompile
    res = run(tmp_path, "extract", "MODEL.CHANNELS_LAST", "True", "TEST.CLIPS_PER_BATCH", "8",
              "SOLVER.FP_16", "False")["extract"]
    assert res["clips"] == sum(MARS_CLIPS_PER_TRACKLET)
    assert res["tracklets"] == len(MARS_CLIPS_PER_TRACKLET)
    assert res["clips_per_batch"] == 8
    assert res["speedup_batched"] == pytest.approx(
        res["batched_clips_per_s"] / res["one_tracklet_at_a_time_clips_per_s"])
    assert res["compile"] is False and res["batched_compiled_compile_s"] > 0   # timed apart
    assert res["batched_compiled_timed_compilations"] == 0      # warmed up at the timed chunk
    assert res["speedup_batched_compiled"] == pytest.approx(
        res["batched_compiled_clips_per_s"] / res["one_tracklet_at_a_time_clips_per_s"])
    assert res["amp_dtype"] == "float32" and res["cudnn_benchmark"] is False
    assert res["channels_last"] is True        # (forced) ours; the original's NCHW, same weights
    assert res["max_feature_diff"] <= 1e-4 * max(1.0, res["max_feature_abs"])  # every run
    res = run(tmp_path, "data")["data"]
    rates = [res[f"workers_{w}_clips_per_s"] for w in (0, 1, 2)]
    assert res["clips_per_s"] == max(rates) and min(rates) > 0
    assert res["pipeline_to_decode_ratio"] == pytest.approx(
        res["train_frames_per_s_0_workers"] / res["decode_only_frames_per_s"])
    assert min(res["decode_only_frames_per_s"], res["pil_decode_frames_per_s"]) > 0


def test_extraction_compares_a_bfloat16_default_with_the_originals_float32(tmp_path,
                                                                           monkeypatch):
    """With bfloat16 evaluation (SOLVER.FP_16 on a CPU, CPU_PRECISION bfloat16 here: auto where
    the CPU has native bf16) the original's way stays float32, as the original runs on a CPU;
    ours is also timed in float32, and the float32 features equal the original's to rounding.
    (The compiled run traces with Dynamo's eager backend: inductor is tested above.)"""
    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile",
                        lambda module, **kw: real_compile(module, **{**kw, "backend": "eager"}))
    torch._dynamo.reset()
    res = run(tmp_path, "extract", "TEST.CLIPS_PER_BATCH", "8", "SOLVER.FP_16", "True",
              "SOLVER.CPU_PRECISION", "bfloat16")["extract"]
    assert (res["amp_dtype"], res["original_amp_dtype"]) == ("bfloat16", "float32")
    assert res["speedup_batched_float32"] == pytest.approx(
        res["batched_float32_clips_per_s"] / res["one_tracklet_at_a_time_clips_per_s"])
    assert res["max_feature_diff"] <= 1e-4 * max(1.0, res["max_feature_abs"])
    # bfloat16 keeps 8 significant bits: the features differ by a few percent at most
    assert 1e-4 * res["max_feature_abs"] < res["max_feature_diff_bfloat16"]
    assert res["max_feature_diff_bfloat16"] < 0.1 * res["max_feature_abs"]
    assert res["min_feature_cosine_bfloat16"] > 0.99


def test_extraction_fills_whole_chunks():
    assert bench_tracklets(2) == list(MARS_CLIPS_PER_TRACKLET)           # a CPU: 65 clips
    big = bench_tracklets(128)                                           # CUDA
    assert sum(big) >= 4 * 128 and big == list(MARS_CLIPS_PER_TRACKLET) * 8


def test_compute_sets_each_step_against_its_own_precision(tmp_path, monkeypatch):
    cfg = benchmark_config(None, TINY, CPU, str(tmp_path))
    num_classes, attr_lens = dataset_facts("mars")
    model = build_model(cfg, num_classes, attr_lens, load_pretrained=False)
    flops = count_flops(model, (1, cfg.DATASETS.SEQ_LEN, 3, 32, 16))["flops"]
    rates = {torch.float32: 100.0, torch.bfloat16: 400.0}
    measured = []
    monkeypatch.setattr(pipeline, "matmul_gflops",
                        lambda device, dtype: measured.append(dtype) or rates[dtype])
    train = {"variants": {"fp32": {"amp_dtype": "float32", "clips_per_s": 2.0},
                          "bf16": {"amp_dtype": "bfloat16", "clips_per_s": 4.0}}}
    res = bench_compute(cfg, CPU, train)
    assert sorted(measured, key=str) == [torch.bfloat16, torch.float32]  # once per precision
    assert res["gflops_per_clip"] == pytest.approx(flops / 1e9)
    assert res["gmacs_per_clip"] == pytest.approx(flops / 2e9)
    assert (res["matmul_gflops_per_s_float32"], res["matmul_gflops_per_s_bfloat16"]) == (
        100.0, 400.0)
    bf16 = res["train"]["bf16"]
    assert bf16["achieved_gflops_per_s"] == pytest.approx(3 * flops / 1e9 * 4.0)
    assert bf16["fraction_of_matmul_rate"] == pytest.approx(3 * flops / 1e9 * 4.0 / 400.0)
    assert res["train"]["fp32"]["fraction_of_matmul_rate"] == pytest.approx(
        3 * flops / 1e9 * 2.0 / 100.0)
    # no train report: the rate of the precision the config's step runs in, no fraction
    measured.clear()
    bf16_cfg = with_overrides(cfg, TRAIN_VARIANTS["bf16"].overrides)
    res = bench_compute(bf16_cfg, CPU, None)
    assert measured == [torch.bfloat16] and "train" not in res
    assert "matmul_gflops_per_s_float32" not in res


def test_matmul_rate_runs_in_the_dtype_asked_for():
    class MatmulDtypes(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.dtypes = set()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.overloadpacket in (torch.ops.aten.mm, torch.ops.aten.matmul):
                self.dtypes.update(a.dtype for a in args if isinstance(a, torch.Tensor))
            return func(*args, **(kwargs or {}))

    for dtype in (torch.bfloat16, torch.float32):
        with MatmulDtypes() as mode:
            assert matmul_gflops(CPU, dtype, n=32, repeats=2) > 0
        assert mode.dtypes == {dtype}


def test_device_is_the_configured_one(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device(["MODEL.NAME", "resnet18", "MODEL.DEVICE", "cpu"]) == CPU
    assert resolve_device(["MODEL.NAME", "resnet18"]).type == "cuda"


def test_loss_benchmark_runs_on_the_configured_device(monkeypatch):
    got = {}

    def fake_loss_benchmark(**kwargs):
        got.update(kwargs)
        return {32: {"speedup_all": 2.0}}

    monkeypatch.setattr(benchmark, "run_loss_benchmark", fake_loss_benchmark)
    cuda = torch.device("cuda")
    res = benchmark.run_benchmark("loss", argparse.Namespace(), None, cuda, "", {})
    assert got["device"] == cuda and res == {"device": "cuda", 32: {"speedup_all": 2.0}}


def test_memory_child_measures_one_step(tmp_path, capsys):
    assert benchmark_memory.main(["--ckpt", "False", "--root", str(tmp_path), *TINY,
                                  "SOLVER.FP_16", "False"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["step_mb"] == pytest.approx(res["peak_mb"] - res["baseline_mb"])
    assert res["peak_mb"] >= res["baseline_mb"] > 0 and res["amp_dtype"] == "float32"
    assert res["peak_measure"] == benchmark_memory.CPU_MEASURE


def test_cuda_memory_peak_is_a_warmed_up_steps(tmp_path, monkeypatch):
    """The CUDA branch of step_memory, its calls recorded on a CPU trainer: the peak counters
    are reset after a warm-up step and read after the measured one."""
    events = []
    cfg = benchmark_config(None, TINY + ["SOLVER.FP_16", "False"], CPU, str(tmp_path))
    trainer = pipeline.build_trainer(cfg, CPU)
    real_step = trainer.run_step
    monkeypatch.setattr(trainer, "run_step", lambda batch: events.append("step") or
                        real_step(batch))
    monkeypatch.setattr(benchmark_memory, "sync", lambda device: None)
    monkeypatch.setattr(torch.cuda, "memory_allocated",
                        lambda device: events.append("base") or 100 * 2**20)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats",
                        lambda device: events.append("reset"))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated",
                        lambda device: events.append("peak") or 250 * 2**20)
    batch = benchmark_memory.random_train_batch(cfg, dataset_facts("mars")[1])
    res = benchmark_memory.step_memory(trainer, batch, torch.device("cuda"))
    assert events == ["step", "base", "reset", "step", "peak"]
    assert (res["baseline_mb"], res["peak_mb"], res["step_mb"]) == (100.0, 250.0, 150.0)
    assert res["peak_measure"] == benchmark_memory.CUDA_MEASURE


def test_random_train_batch_has_the_loaders_shapes(tmp_path):
    cfg = benchmark_config(None, TINY + ["SOLVER.SEQS_PER_BATCH", "8"], CPU, str(tmp_path))
    attr_lens = dataset_facts("mars")[1]
    clips, pids, camids, attrs = benchmark_memory.random_train_batch(cfg, attr_lens)
    assert clips.shape == (8, cfg.DATASETS.SEQ_LEN, 3, 32, 16) and camids.shape == (8,)
    assert pids.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]                  # NUM_INSTANCE 4
    assert [a.shape for a in attrs] == [(8, sum(g)) for g in attr_lens]  # "bce" one-hots
    assert all((a.sum(1) == len(g)).all() for a, g in zip(attrs, attr_lens))


def test_usage_and_bad_benchmark_name(capsys):
    assert benchmark.build_parser().format_usage().startswith("usage: python -m tools.benchmark")
    with pytest.raises(SystemExit) as e:
        benchmark.main(["trian"])
    assert e.value.code == 2
    assert "unknown benchmark 'trian'" in capsys.readouterr().err


def _unwritable_outs(tmp_path):
    """Report paths that cannot be written: under a file, a folder, under /proc, and (when not
    root, who may write anywhere) in a read-only folder."""
    (tmp_path / "file").write_text("x")
    (tmp_path / "folder").mkdir()
    outs = [tmp_path / "file" / "b.json", tmp_path / "folder", "/proc/reid-bench.json"]
    if os.geteuid() != 0:
        (tmp_path / "ro").mkdir(mode=0o555)
        outs.append(tmp_path / "ro" / "b.json")
    return [str(p) for p in outs]


def test_unwritable_out_fails_before_measuring(tmp_path, monkeypatch, capsys):
    def no_measuring(*args, **kwargs):
        raise AssertionError("measured before checking --out")

    monkeypatch.setattr(benchmark, "benchmark_config", no_measuring)
    for out in _unwritable_outs(tmp_path):
        assert benchmark.main(["loss", "--out", out]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"error: --out '{out}' cannot be written")
    assert (tmp_path / "file").read_text() == "x"
