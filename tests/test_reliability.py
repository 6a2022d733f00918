"""Fault injection: interruptions, non-finite losses, bad files — clear errors, nothing lost."""

import json
import signal

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

    def __call__(self, *args):
        self.calls += 1
        if self.calls == self.n:
            signal.raise_signal(signal.SIGTERM)
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
    real = main_baseline.make_loss
    monkeypatch.setattr(main_baseline, "make_loss",
                        lambda *a, **k: wrapper(real(*a, **k), n))


def test_sigterm_mid_epoch_then_resume_matches_uninterrupted(tiny_mars, tmp_path, monkeypatch):
    full, part = tmp_path / "full", tmp_path / "part"
    assert main_baseline.main(["--config_file", "", *tiny_opts(tiny_mars, full, 2)]) == 0
    n = iterations_per_epoch(tiny_mars, full)
    assert n >= 3
    _patch_loss(monkeypatch, _SignalAfter, n + 2)      # the second iteration of epoch 2
    assert main_baseline.main(["--config_file", "", *tiny_opts(tiny_mars, part, 2)]) == 130
    monkeypatch.undo()
    (first,) = run_dirs(part)
    state = load_file(str(first / "interrupted.pth"))
    assert (first / "last_checkpoint").read_text().strip() == "interrupted.pth"
    assert state["epoch"] == 1 and state["iteration"] == 2
    assert main_baseline.main(["--config_file", "", *tiny_opts(tiny_mars, part, 2),
                               "--resume", str(first / "interrupted.pth")]) == 0
    a = load_file(str(run_dirs(full)[0] / "checkpoint_ep2.pth"))["model"]
    b = load_file(str(run_dirs(part)[-1] / "checkpoint_ep2.pth"))["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


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
