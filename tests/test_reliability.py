"""Fault injection: interruptions, non-finite losses, bad files — clear errors, nothing lost."""

import io
import json
import signal
from pathlib import Path

import pytest
import torch

import main_baseline
from tests.helpers import run_dirs, tiny_opts
from utils.checkpoint import load_file


class _SignalAfter:
    """Wraps a criterion: raises SIGTERM in this process at the n-th call (mid-epoch)."""

    def __init__(self, criterion, n):
        self.criterion, self.n, self.calls = criterion, n, 0

    def __getattr__(self, name):
        return getattr(self.criterion, name)

    def to(self, *args, **kwargs):
        self.criterion.to(*args, **kwargs)
        return self

    signum = signal.SIGTERM

    def __call__(self, *args):
        self.calls += 1
        if self.calls == self.n:
            signal.raise_signal(self.signum)
        return self.criterion(*args)


class _NanAt(_SignalAfter):
    """Wraps a criterion: the triplet term (and the total) become NaN from the n-th call on."""

    def __call__(self, *args):
        self.calls += 1
        out = self.criterion(*args)
        if self.calls >= self.n:
            out = dict(out)
            out["loss_triplet"] = out["loss_triplet"] * float("nan")
            out["total"] = out["total"] + out["loss_triplet"]
        return out


def iterations_per_epoch(root, out) -> int:
    from config import load_cfg
    from data import make_data_loaders

    return len(make_data_loaders(load_cfg(None, tiny_opts(root, out)))[0])


def _patch_loss(monkeypatch, wrapper, n):
    import engine.trainer as trainer_module

    real = trainer_module.make_loss
    monkeypatch.setattr(trainer_module, "make_loss",
                        lambda *a, **k: wrapper(real(*a, **k), n))


# float16: the GPU's path (autocast + grad scaler, its scale doubling after every step so that
# a lost scaler state shows); bfloat16: autocast without a scaler
PRECISIONS = {"float32": [], "bfloat16": [],
              "float16": ["SOLVER.GRAD_SCALER_INIT_SCALE", "256",
                          "SOLVER.GRAD_SCALER_GROWTH_INTERVAL", "1"]}


@pytest.mark.parametrize("precision", list(PRECISIONS))
def test_sigterm_mid_epoch_then_resume_matches_uninterrupted(tiny_mars, tmp_path, monkeypatch,
                                                             precision):
    full, part = tmp_path / "full", tmp_path / "part"
    opts = ["SOLVER.FP_16", "True", "SOLVER.CPU_PRECISION", precision, *PRECISIONS[precision]]
    assert main_baseline.main(["--config_file", "", *tiny_opts(tiny_mars, full, 2), *opts]) == 0
    n = iterations_per_epoch(tiny_mars, full)
    assert n >= 3
    _patch_loss(monkeypatch, _SignalAfter, n + 2)      # the second iteration of epoch 2
    assert main_baseline.main(["--config_file", "", *tiny_opts(tiny_mars, part, 2),
                               *opts]) == 143
    monkeypatch.undo()
    (first,) = run_dirs(part)
    state = load_file(str(first / "interrupted.pth"))
    assert (first / "last_checkpoint").read_text().strip() == "interrupted.pth"
    assert state["epoch"] == 1 and state["iteration"] == 2
    assert (first / "curves.png").is_file()            # an interrupted run still draws them
    assert main_baseline.main(["--config_file", "", *tiny_opts(tiny_mars, part, 2), *opts,
                               "--resume", str(first / "interrupted.pth")]) == 0
    ref = load_file(str(run_dirs(full)[0] / "checkpoint_ep2.pth"))
    got = load_file(str(run_dirs(part)[-1] / "checkpoint_ep2.pth"))
    assert got["scaler"] == ref["scaler"]
    if precision == "float16":
        assert state["scaler"]["scale"] == 256 * 2 ** (n + 2)   # n + 2 steps, none skipped
    a, b = ref["model"], got["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    # the interrupted epoch's record covers all its iterations, as in the uninterrupted run
    ref = json.loads((run_dirs(full)[0] / "metrics.json").read_text())["epochs"]
    got = json.loads((run_dirs(part)[-1] / "metrics.json").read_text())["epochs"]
    assert [e["epoch"] for e in got] == [1, 2]
    for key in [k for k in ref[1] if k.startswith("loss_") or k == "total"]:
        assert got[1][key] == pytest.approx(ref[1][key], rel=1e-6), key
    batch = 4 * n                                     # tiny_opts: 4 clips per iteration
    assert got[1]["clips_per_s"] * got[1]["seconds"] == pytest.approx(batch, rel=1e-6)


def test_sigint_exits_130(tiny_mars, tmp_path, monkeypatch):
    _patch_loss(monkeypatch, _SignalAfter, 2)
    monkeypatch.setattr(_SignalAfter, "signum", signal.SIGINT, raising=False)
    out = tmp_path / "int"
    assert main_baseline.main(["--config_file", "", *tiny_opts(tiny_mars, out, 2)]) == 130
    assert load_file(str(run_dirs(out)[0] / "interrupted.pth"))["iteration"] == 2


class _TwoSignals(_SignalAfter):
    """Raises SIGTERM twice in the same iteration: the second stops at once."""

    def __call__(self, *args):
        self.calls += 1
        if self.calls == self.n:
            signal.raise_signal(signal.SIGTERM)
            signal.raise_signal(signal.SIGTERM)
        return self.criterion(*args)


def test_a_second_signal_stops_at_once_without_a_traceback(tiny_mars, tmp_path, monkeypatch,
                                                           capsys):
    _patch_loss(monkeypatch, _TwoSignals, 2)
    out = tmp_path / "twice"
    assert main_baseline.main(["--config_file", "", *tiny_opts(tiny_mars, out, 2)]) == 143
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    assert "second signal" in captured.out
    (run,) = run_dirs(out)
    assert not (run / "interrupted.pth").exists()      # no checkpoint of a half-done step


def _signal_during_evaluation(monkeypatch, times: int) -> None:
    """Every evaluation of the trainer first receives ``times`` SIGTERMs."""
    import engine.trainer as trainer_module

    real = trainer_module.evaluate

    def signalled(*args, **kwargs):
        for _ in range(times):
            signal.raise_signal(signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "evaluate", signalled)


def test_a_signal_during_evaluation_waits_for_it(tiny_mars, tmp_path, monkeypatch, capsys):
    _signal_during_evaluation(monkeypatch, times=1)
    out = tmp_path / "eval_sig"
    opts = [*tiny_opts(tiny_mars, out, 3), "SOLVER.EVAL_PERIOD", "1"]
    assert main_baseline.main(["--config_file", "", *opts]) == 143
    assert "during the evaluation: it finishes first" in capsys.readouterr().out
    (run,) = run_dirs(out)
    metrics = json.loads((run / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["evaluations"]] == [1]      # it finished
    state = load_file(str(run / "interrupted.pth"))
    assert (state["epoch"], state["iteration"]) == (1, 0)
    monkeypatch.undo()
    assert main_baseline.main(["--config_file", "", *opts, "--resume"]) == 0
    assert load_file(str(run_dirs(out)[-1] / "checkpoint_ep3.pth"))["epoch"] == 3


@pytest.mark.parametrize("where", ["file", "under_a_file", "proc"])
def test_an_output_dir_that_cannot_be_written(tiny_mars, tmp_path, capsys, where):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    out = {"file": blocker, "under_a_file": blocker / "runs",
           "proc": Path("/proc/reid_no_such_dir/runs")}[where]
    assert main_baseline.main(["--config_file", "", *tiny_opts(tiny_mars, out)]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"error: OUTPUT_DIR '{out}' cannot be written")
    assert "Traceback" not in captured.err + captured.out
    assert blocker.read_text() == "x"


def test_resuming_a_finished_run_says_so_and_makes_no_folder(tiny_mars, tmp_path, capsys):
    out = tmp_path / "done"
    assert main_baseline.main(["--config_file", "", *tiny_opts(tiny_mars, out, 1)]) == 0
    before = run_dirs(out)
    capsys.readouterr()
    assert main_baseline.main(["--config_file", "", *tiny_opts(tiny_mars, out, 1),
                               "--resume"]) == 0
    assert run_dirs(out) == before
    assert "all 1 epochs (SOLVER.MAX_EPOCHS) are done, nothing to train" in capsys.readouterr().out


def test_nan_loss_stops_with_term_name_and_keeps_checkpoint(tiny_mars, tmp_path, monkeypatch,
                                                            capsys):
    out = tmp_path / "nan"
    _patch_loss(monkeypatch, _NanAt, iterations_per_epoch(tiny_mars, out) + 2)   # epoch 2
    assert main_baseline.main(["--config_file", "", *tiny_opts(tiny_mars, out, 2)]) == 2
    err = capsys.readouterr().err
    assert "loss_triplet" in err and "epoch 2" in err
    (run,) = run_dirs(out)
    good = load_file(str(run / "checkpoint_ep1.pth"))
    assert good["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in good["model"].values() if v.is_floating_point())
    assert not (run / "checkpoint_ep2.pth").exists()
    assert (run / "last_checkpoint").read_text().strip() == "checkpoint_ep1.pth"
    metrics = json.loads((run / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["epochs"]] == [1]


def test_checkpoint_loads_are_weights_only(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("executed",))

    path = tmp_path / "evil.pth"
    torch.save({"model": Evil()}, path)
    from utils.checkpoint import load_file as load
    from utils.errors import UserError

    with pytest.raises(UserError, match="evil.pth"):
        load(str(path))


@pytest.mark.parametrize("mode", ["eval-only", "resume", "pretrain"])
def test_a_file_that_is_no_checkpoint_is_named_without_unsafe_advice(tiny_mars, tmp_path, capsys,
                                                                     mode):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(bytes(range(3, 256)) * 64)
    extra = {"eval-only": ["--eval-only", "TEST.WEIGHT", str(junk)],
             "resume": ["--resume", str(junk)],
             "pretrain": ["MODEL.PRETRAIN_CHOICE", "imagenet", "MODEL.PRETRAIN_PATH", str(junk)],
             }[mode]
    out = tmp_path / "out"
    assert main_baseline.main(["--config_file", "", *tiny_opts(tiny_mars, out), *extra]) == 2
    err = capsys.readouterr().err
    assert f"'{junk}' is not a PyTorch checkpoint" in err
    assert "weights_only" not in err and "file an issue" not in err
    assert not out.exists() or run_dirs(out) == []


def test_a_second_signal_during_evaluation_stops_without_a_checkpoint(tiny_mars, tmp_path,
                                                                     monkeypatch, capsys):
    _signal_during_evaluation(monkeypatch, times=2)
    out = tmp_path / "eval_twice"
    opts = [*tiny_opts(tiny_mars, out, 3), "SOLVER.EVAL_PERIOD", "1"]
    assert main_baseline.main(["--config_file", "", *opts]) == 143
    captured = capsys.readouterr()
    assert "Evaluation after epoch" not in captured.out + captured.err   # not a failure
    assert "Traceback" not in captured.out + captured.err
    (run,) = run_dirs(out)
    assert not (run / "checkpoint_ep1.pth").exists() and not (run / "interrupted.pth").exists()


@pytest.mark.parametrize(("workers", "signum"), [(1, signal.SIGINT), (1, signal.SIGTERM),
                                                 (0, signal.SIGINT)])
def test_two_signals_to_the_process_group_stop_at_once_with_one_line(tiny_mars, tmp_path,
                                                                     workers, signum):
    """Ctrl-C twice in a terminal (both signals reach the loader workers too): exit 130 (143
    for SIGTERM), no traceback, the workers shut down quietly."""
    import os
    import subprocess
    import sys
    import time

    from tests.helpers import ROOT

    opts = [*tiny_opts(tiny_mars, tmp_path / "out", 50), "DATALOADER.NUM_WORKERS", str(workers)]
    proc = subprocess.Popen([sys.executable, "main_baseline.py", "--config_file", "", *opts],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    lines = []
    for line in proc.stdout:       # wait until training runs
        lines.append(line)
        if "Epoch[1] Iteration[1/" in line:
            break
    os.killpg(proc.pid, signum)
    time.sleep(0.05)
    os.killpg(proc.pid, signum)
    rest, _ = proc.communicate(timeout=120)
    output = "".join(lines) + rest
    assert proc.returncode == 128 + signum, output[-3000:]
    assert "Traceback" not in output and "exited unexpectedly" not in output, output[-3000:]
    assert "Exception ignored" not in output, output[-3000:]
    assert output.count("second signal") == 2, output[-2000:]   # the warning, then the stop


class _SignalOnWrite(io.RawIOBase):
    """A log stream's file that receives ``times`` SIGTERMs while it writes the first
    iteration line: the signal handler runs while the main thread is inside the buffered
    writer of a log handler (as when the signal lands during a write to log.txt)."""

    def __init__(self, times: int) -> None:
        super().__init__()
        self.times, self.data = times, bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        if self.times and b"Iteration[" in bytes(b):
            times, self.times = self.times, 0
            for _ in range(times):
                signal.raise_signal(signal.SIGTERM)
        self.data += bytes(b)
        return len(b)


@pytest.mark.parametrize("times", [1, 2])
def test_a_signal_during_a_log_write_is_logged_and_stops_the_run(tiny_mars, tmp_path,
                                                                monkeypatch, capsys, times):
    import logging

    from engine.trainer import Trainer

    raw = _SignalOnWrite(times)
    stream = io.TextIOWrapper(io.BufferedWriter(raw), encoding="utf-8")
    real_train = Trainer.train

    def train_with_the_stream(self):
        handler = logging.StreamHandler(stream)
        logging.getLogger("reid").addHandler(handler)
        try:
            return real_train(self)
        finally:
            logging.getLogger("reid").removeHandler(handler)

    monkeypatch.setattr(Trainer, "train", train_with_the_stream)
    out = tmp_path / "log_write"
    assert main_baseline.main(["--config_file", "", *tiny_opts(tiny_mars, out, 2)]) == 143
    stream.flush()
    captured = capsys.readouterr()
    assert "Logging error" not in captured.out + captured.err
    assert "Traceback" not in captured.out + captured.err
    (run,) = run_dirs(out)
    log = (run / "log.txt").read_text()
    assert log.count("Received signal 15: finishing this iteration") == 1
    assert raw.data.decode().count("Received signal 15: finishing this iteration") == 1
    assert (run / "interrupted.pth").exists() == (times == 1)
    if times == 2:
        assert "Stopped at once by a second signal (15)" in log


def test_a_second_signal_during_the_checkpoint_write_lets_it_finish(tiny_mars, tmp_path,
                                                                    monkeypatch, capsys):
    """torch.save cannot be interrupted safely: the interruption checkpoint is completed, then
    the run stops (exit 143), without a traceback."""
    import engine.trainer as trainer_module

    real_save = trainer_module.Checkpointer.save

    def save(self, name, state):
        signal.raise_signal(signal.SIGTERM)      # arrives while the file is being written
        return real_save(self, name, state)

    _patch_loss(monkeypatch, _SignalAfter, 2)
    monkeypatch.setattr(trainer_module.Checkpointer, "save", save)
    out = tmp_path / "twice"
    assert main_baseline.main(["--config_file", "", *tiny_opts(tiny_mars, out, 2)]) == 143
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    assert "once the checkpoint being written was complete" in captured.out
    (run,) = run_dirs(out)
    assert load_file(str(run / "interrupted.pth"))["iteration"] == 2
    assert not list(run.glob(".tmp-*"))
