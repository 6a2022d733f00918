"""End to end on the CPU: train + evaluate, resume equivalence, evaluation-only, torchrun."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import main_baseline
from engine import convert_sync_bn
from tests.helpers import MARS_ATTR_LENS, ROOT, run_dirs, tiny_opts
from utils.checkpoint import load_file
from utils.metrics import format_metrics_table


def test_train_then_evaluate_end_to_end(tiny_mars, tmp_path):
    out = tmp_path / "out"
    assert main_baseline.main(["--config_file", "", *tiny_opts(tiny_mars, out),
                               "SOLVER.EVAL_BEFORE_TRAIN", "True"]) == 0
    (run,) = run_dirs(out)
    names = {p.name for p in run.iterdir()}
    assert {"config.yaml", "env.txt", "log.txt", "metrics.json", "checkpoint_ep1.pth",
            "checkpoint_ep2.pth", "last_checkpoint"} <= names
    assert any(n.startswith("rank1_") and n.endswith("_checkpoint_ep2.pth") for n in names)
    metrics = json.loads((run / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["evaluations"]] == [0, 2]
    for e in metrics["evaluations"]:
        assert 0.0 <= e["mAP"] <= 1.0 and 0.0 <= e["R1"] <= e["R5"] <= e["R20"] <= 1.0
        assert 0.0 <= e["attr"]["mean_acc"] <= 1.0
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2]
    for e in metrics["epochs"]:
        assert np.isfinite(e["total"]) and e["loss_id"] > 0 and e["loss_aitl_related"] >= 0
    log = (run / "log.txt").read_text()
    assert "loss_triplet=" in log and "Precision: float32 (SOLVER.FP_16 on a CPU" in log
    assert ("Loss: total = loss_id + (loss_triplet + loss_aitl_unrelated + loss_aitl_related) "
            "/ 3 + loss_attr (the logged terms are weighted)") in log
    ck = load_file(str(run / "checkpoint_ep2.pth"))
    assert {"model", "optimizer", "scheduler", "scaler", "epoch", "best_r1", "rng"} <= set(ck)
    assert ck["epoch"] == 2


def test_resume_gives_the_same_weights(tiny_mars, tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    assert main_baseline.main(["--config_file", "", *tiny_opts(tiny_mars, full, 2)]) == 0
    assert main_baseline.main(["--config_file", "", *tiny_opts(tiny_mars, part, 1)]) == 0
    (first,) = run_dirs(part)
    (first / ".tmp-00000000deadbeef.pth").write_bytes(b"a killed checkpoint write")
    assert main_baseline.main(["--config_file", "", *tiny_opts(tiny_mars, part, 2),
                               "--resume", str(first / "checkpoint_ep1.pth")]) == 0
    (resumed,) = run_dirs(part)          # continued in the run folder of the checkpoint
    assert resumed == first
    assert not list(first.glob(".tmp-*"))
    log = (first / "log.txt").read_text()
    assert log.count("Command: ") == 2 and "Resuming in run folder" in log
    assert "config.yaml rewritten with the changed config" in log   # MAX_EPOCHS 1 -> 2
    before, after = log.split("Resuming in run folder")
    assert "Epoch 1 done" in before and "'SOLVER.MAX_EPOCHS', '1'" in before   # kept
    assert "'SOLVER.MAX_EPOCHS', '2'" in after and "Epoch 2 done" in after
    assert "MAX_EPOCHS: 2" in (first / "config.yaml").read_text()
    epochs = json.loads((first / "metrics.json").read_text())["epochs"]
    assert [e["epoch"] for e in epochs] == [1, 2]
    assert {"checkpoint_ep1.pth", "checkpoint_ep2.pth"} <= {p.name for p in first.iterdir()}
    a = load_file(str(run_dirs(full)[0] / "checkpoint_ep2.pth"))["model"]
    b = load_file(str(resumed / "checkpoint_ep2.pth"))["model"]
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    # --resume without a path takes the newest run's last_checkpoint; --new-folder asks for
    # a new run folder
    assert main_baseline.main(["--config_file", "", *tiny_opts(tiny_mars, part, 3),
                               "--resume", "--new-folder"]) == 0
    first_again, new = run_dirs(part)
    assert first_again == first and load_file(str(new / "checkpoint_ep3.pth"))["epoch"] == 3
    assert not (first / "checkpoint_ep3.pth").exists()


def test_evaluation_only_from_checkpoints(tiny_mars, tmp_path):
    out = tmp_path / "out"
    assert main_baseline.main(["--config_file", "", *tiny_opts(tiny_mars, out)]) == 0
    (run,) = run_dirs(out)
    trained = json.loads((run / "metrics.json").read_text())["evaluations"][-1]
    best = next(run.glob("rank1_*_checkpoint_ep2.pth"))
    plain = tmp_path / "plain_module.pth"     # the original saves DataParallel state dicts
    torch.save({f"module.{k}": v for k, v in load_file(str(best)).items()}, plain)
    for weight in (run / "checkpoint_ep2.pth", best, plain):
        ev = tmp_path / f"eval_{weight.stem}"
        assert main_baseline.main(["--config_file", "", *tiny_opts(tiny_mars, ev), "--eval-only",
                                   "TEST.WEIGHT", str(weight)]) == 0
        (erun,) = run_dirs(ev)
        metrics = json.loads((erun / "metrics.json").read_text())
        assert metrics["weights"] == str(weight)          # what was evaluated
        got = metrics["evaluations"][0]
        assert got["mAP"] == pytest.approx(trained["mAP"], abs=1e-6)
        assert got["R1"] == pytest.approx(trained["R1"], abs=1e-6)
        # the results table of these numbers, under its heading
        table = format_metrics_table({k: got[k] for k in ("mAP", "R1", "R5", "R10", "R20")})
        assert table.startswith("mAP   | R1    | R5    | R10   | R20\n------+-------+")
        log = (erun / "log.txt").read_text()
        assert f"] Results of {weight} (" in log and f" s):\n{table}\n" in log
    # a checkpoint of another dataset (another number of identities): everything but the
    # identity classifier loads, and retrieval gives the same numbers
    other = tmp_path / "other_dataset.pth"
    state = load_file(str(best))
    state["classifier.weight"] = torch.randn(20, state["classifier.weight"].shape[1])
    torch.save(state, other)
    ev = tmp_path / "eval_other"
    assert main_baseline.main(["--config_file", "", *tiny_opts(tiny_mars, ev), "--eval-only",
                               "TEST.WEIGHT", str(other)]) == 0
    (erun,) = run_dirs(ev)
    got = json.loads((erun / "metrics.json").read_text())["evaluations"][0]
    assert got["mAP"] == pytest.approx(trained["mAP"], abs=1e-6)
    assert "classifier.weight [20, " in (erun / "log.txt").read_text()
    # any other layer that does not fit is still an error
    state["bottleneck.weight"] = torch.ones(7)
    torch.save(state, other)
    assert main_baseline.main(["--config_file", "", *tiny_opts(tiny_mars, tmp_path / "bad"),
                               "--eval-only", "TEST.WEIGHT", str(other)]) == 2


def test_sync_bn_conversion_counts_every_batchnorm():
    from config import load_cfg
    from modeling import build_model

    cfg = load_cfg(None, ["MODEL.NAME", "resnet18", "MODEL.PRETRAIN_CHOICE", "none",
                          "INPUT.SIZE_TRAIN", "[32, 16]", "INPUT.SIZE_TEST", "[32, 16]"])
    model = build_model(cfg, 4, MARS_ATTR_LENS)
    n_bn = sum(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    converted, n = convert_sync_bn(model)
    assert n == n_bn > 20
    assert not any(type(m) is torch.nn.BatchNorm2d for m in converted.modules())


def torchrun(*args: str, port: int, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_port", str(port), *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_torchrun_sampler_split(tiny_mars, tmp_path):
    r = torchrun(str(ROOT / "tests" / "ddp_check.py"), str(tiny_mars), str(tmp_path), port=29517)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "ddp-check: sampler split ok" in r.stdout


def test_torchrun_command_line_writes_one_run_with_per_rank_seeds(tiny_mars, tmp_path):
    """The real command line under torchrun (2 processes, gloo): rank 0 alone writes one run
    folder and logs each line once; every process has its own seed."""
    out = tmp_path / "ddp"
    opts = [*tiny_opts(tiny_mars, out, epochs=1), "SOLVER.SEQS_PER_BATCH", "8"]
    r = torchrun("main_baseline.py", "--config_file", "", *opts, port=29518)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (run,) = run_dirs(out)
    assert (run / "checkpoint_ep1.pth").exists()
    assert r.stdout.count("Run folder:") == 1 and r.stdout.count("Epoch 1 done") == 1
    log = (run / "log.txt").read_text()
    assert log.count("Epoch 1 done") == 1 and "processes: 2" in log
    assert "Seeds of the 2 processes (RANDOM_SEED + rank): [999, 1000]" in log


def test_one_identity_per_batch_and_process_is_an_error(tiny_mars, tmp_path, capsys):
    out = tmp_path / "one_id"
    code = main_baseline.main(["--config_file", "", *tiny_opts(tiny_mars, out),
                               "SOLVER.SEQS_PER_BATCH", "2", "DATALOADER.NUM_INSTANCE", "2"])
    assert code == 2
    err = capsys.readouterr().err
    assert "SOLVER.SEQS_PER_BATCH 2 with DATALOADER.NUM_INSTANCE 2" in err
    assert "at least two identities" in err and "at least 4" in err
    assert not out.exists() or not any(out.iterdir())     # checked before any work


@pytest.mark.parametrize("config", sorted(p.name for p in (ROOT / "configs").glob("*.yml")))
def test_shipped_configs_load_and_validate(config):
    from config import load_cfg

    c = load_cfg(str(ROOT / "configs" / config))
    assert c.MODEL.ARCH == "video_baseline" and c.DATASETS.SEQ_LEN == 4
    if config != "demo.yml":        # the paper settings
        assert (c.MODEL.NAME, c.MODEL.FUSION_METHOD, c.DATASETS.ATTRIBUTE_LOSS) == \
            ("resnet50", "ATTR_TA", "bce")
        assert tuple(c.INPUT.SIZE_TRAIN) == (256, 128) and c.MODEL.LAST_STRIDE == 1


def test_demo_config_writes_its_dataset_and_trains(tmp_path):
    """configs/demo.yml end to end with no preparation (a smaller synthetic set, one epoch)."""
    root, out = tmp_path / "demo_mars", tmp_path / "out"
    assert main_baseline.main([
        "--config_file", str(ROOT / "configs" / "demo.yml"), "DATASETS.ROOT_DIR", str(root),
        "DATASETS.SYNTHETIC.IDS", "8", "DATASETS.SYNTHETIC.TRACKLETS", "4",
        "DATASETS.SYNTHETIC.FRAMES", "4", "DATASETS.SYNTHETIC.SIZE", "[32, 16]",
        "INPUT.SIZE_TRAIN", "[32, 16]", "INPUT.SIZE_TEST", "[32, 16]",
        "SOLVER.SEQS_PER_BATCH", "8", "SOLVER.MAX_EPOCHS", "1", "DATALOADER.NUM_WORKERS", "0",
        "OUTPUT_DIR", str(out)]) == 0
    assert (root / "mars_attributes.csv").is_file() and (root / "info").is_dir()
    (run,) = run_dirs(out)
    metrics = json.loads((run / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["evaluations"]] == [0, 1]      # before and after


@pytest.mark.parametrize(("mode", "port"), [("centres", 29531), ("stop", 29532),
                                            ("evalfail", 29533), ("nonfinite", 29534)])
def test_torchrun_processes_agree(tiny_mars, tmp_path, mode, port):
    """2 gloo processes: the centre-loss centres stay equal across ranks (their gradients are
    averaged like the model's), and a stop, a failed evaluation or a NaN loss of one process
    stops both (a process that stopped alone would leave the other blocked in a collective:
    the timeout would catch it)."""
    r = torchrun(str(ROOT / "tests" / "ddp_trainer_check.py"), str(tiny_mars), str(tmp_path),
                 mode, port=port, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert f"ddp-trainer-check: {mode} ok" in r.stdout
