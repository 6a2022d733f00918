"""The benchmark command runs end to end on a tiny model and writes its JSON report."""

import json

import pytest

from utils import benchmark

TINY = ["MODEL.NAME", "resnet18", "INPUT.SIZE_TRAIN", "[32, 16]", "INPUT.SIZE_TEST", "[32, 16]",
        "DATALOADER.NUM_WORKERS", "0"]


def test_train_extract_data_compute(tmp_path):
    for which in ("train", "extract", "data", "compute"):
        out = tmp_path / f"{which}.json"
        assert benchmark.main([which, *TINY, "--out", str(out), "--iters", "1"]) == 0
        report = json.loads(out.read_text())
        assert report["device"] == "cpu" and "torch" in report and which in report
        res = report[which]
        if which == "train":
            split = res["split_s"]
            assert set(split) >= {"data_wait", "forward", "loss", "backward", "optimizer"}
            assert 0.0 <= res["outside_compute_fraction"] < 1.0 and res["clips_per_s"] > 0
        elif which == "extract":
            assert res["clips"] == sum(benchmark.MARS_CLIPS_PER_TRACKLET)
            assert res["speedup_batched"] > 0 and res["clips_per_batch"] == 2    # auto on CPU
        elif which == "data":
            assert {"workers_0_clips_per_s", "clips_per_s"} <= set(res)
        else:
            assert res["gflops_per_clip"] > 0 and res["matmul_gflops_per_s"] > 0


def test_bad_benchmark_name_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        benchmark.main(["trian"])
    assert e.value.code == 2
    assert "unknown benchmark 'trian'" in capsys.readouterr().err
