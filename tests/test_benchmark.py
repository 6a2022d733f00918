"""The benchmark command (tools.benchmark): its figures against what they measure, tiny model."""

import json
import os

import pytest
import torch

import engine.trainer
from engine import Trainer
from modeling import build_model
from tools import benchmark, benchmark_memory
from tools.benchmark_pipeline import (
    MARS_CLIPS_PER_TRACKLET,
    TRAIN_PHASES,
    bench_compute,
    benchmark_config,
)
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


def test_train_times_the_trainers_step(tmp_path, monkeypatch):
    # The trainer's precision decides: let it autocast to the config's dtype on this CPU too.
    monkeypatch.setattr(engine.trainer, "amp_settings",
                        lambda cfg, device: (getattr(torch, cfg.SOLVER.AMP_DTYPE), False))
    phases = []
    real_step = Trainer.run_step

    def spy(self, batch, timer):
        phases.append([])
        return real_step(self, batch, lambda phase: phases[-1].append(phase) or timer(phase))

    monkeypatch.setattr(Trainer, "run_step", spy)
    res = run(tmp_path, "train", "--iters", "2", "SOLVER.SEQS_PER_BATCH", "8",
              "SOLVER.FP_16", "True", "SOLVER.AMP_DTYPE", "bfloat16")["train"]
    assert phases == [list(TRAIN_PHASES[1:])] * 3              # warm-up + 2 timed steps
    assert res["batch"] == 8 and res["iterations"] == 2 and res["clips"] == 8 * 2
    assert res["amp_dtype"] == "bfloat16" and res["grad_scaler"] is False
    split = res["split_s"]
    assert list(split) == list(TRAIN_PHASES) and all(v >= 0 for v in split.values())
    assert res["step_s"] == pytest.approx(sum(split.values()))
    assert res["clips_per_s"] == pytest.approx(res["clips"] / (res["step_s"] * 2))
    assert res["outside_compute_fraction"] == pytest.approx(
        1 - (split["forward"] + split["backward"]) / res["step_s"])
    # the speed-ups: channels_last ("auto": off on a CPU for these 32x16 frames), fused Adam;
    # cuDNN is for CUDA only
    assert (res["channels_last"], res["optimizer_kernels"], res["cudnn_benchmark"]) == (
        False, "fused", False)


def test_train_without_speedups(tmp_path):
    res = run(tmp_path, "train", "--iters", "1", "--no-speedups")["train"]
    assert (res["channels_last"], res["optimizer_kernels"], res["cudnn_benchmark"]) == (
        False, "foreach", False)
    assert res["iterations"] == 1 and res["step_s"] > 0


def test_extract_and_data(tmp_path):
    res = run(tmp_path, "extract", "MODEL.CHANNELS_LAST", "True")["extract"]
    assert res["clips"] == sum(MARS_CLIPS_PER_TRACKLET)
    assert res["tracklets"] == len(MARS_CLIPS_PER_TRACKLET)
    assert res["clips_per_batch"] == 2                                  # auto on a CPU
    assert res["speedup_batched"] == pytest.approx(
        res["batched_clips_per_s"] / res["one_tracklet_at_a_time_clips_per_s"])
    assert res["compile"] is False and res["batched_compiled_compile_s"] > 0   # timed apart
    assert res["speedup_batched_compiled"] == pytest.approx(
        res["batched_compiled_clips_per_s"] / res["one_tracklet_at_a_time_clips_per_s"])
    assert res["amp_dtype"] == "float32"                               # no autocast on a CPU
    assert res["channels_last"] is True        # (forced) ours; the original's NCHW, same weights
    assert res["max_feature_diff"] <= 1e-4 * max(1.0, res["max_feature_abs"])  # every run
    res = run(tmp_path, "data")["data"]
    rates = [res[f"workers_{w}_clips_per_s"] for w in (0, 1, 2)]
    assert res["clips_per_s"] == max(rates) and min(rates) > 0
    assert res["pipeline_to_decode_ratio"] == pytest.approx(
        res["train_frames_per_s_0_workers"] / res["decode_only_frames_per_s"])
    assert min(res["decode_only_frames_per_s"], res["pil_decode_frames_per_s"]) > 0


def test_compute_figures(tmp_path):
    cfg = benchmark_config(None, TINY, CPU, str(tmp_path))
    num_classes, attr_lens = dataset_facts("mars")
    model = build_model(cfg, num_classes, attr_lens, load_pretrained=False)
    flops = count_flops(model, (1, cfg.DATASETS.SEQ_LEN, 3, 32, 16))["flops"]
    res = bench_compute(cfg, CPU, {"clips_per_s": 2.0})
    assert res["gflops_per_clip"] == pytest.approx(flops / 1e9)
    assert res["gmacs_per_clip"] == pytest.approx(flops / 2e9)
    assert res["train_achieved_gflops_per_s"] == pytest.approx(3 * flops / 1e9 * 2.0)
    assert res["train_fraction_of_matmul_rate"] == pytest.approx(
        res["train_achieved_gflops_per_s"] / res["matmul_gflops_per_s"])
    assert "train_achieved_gflops_per_s" not in bench_compute(cfg, CPU, None)


def test_memory_child_measures_one_step(tmp_path, capsys):
    assert benchmark_memory.main(["--ckpt", "False", "--root", str(tmp_path), *TINY]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["step_mb"] == pytest.approx(res["peak_mb"] - res["baseline_mb"])
    assert res["peak_mb"] >= res["baseline_mb"] > 0 and res["amp_dtype"] == "float32"


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
