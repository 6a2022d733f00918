"""Checkpoint files: atomic writes, the last_checkpoint pointer, RNG state round trip."""

import os
import random

import numpy as np
import pytest
import torch

from utils.checkpoint import (
    Checkpointer,
    atomic_save,
    atomic_write_text,
    capture_rng_state,
    load_file,
    restore_rng_state,
)
from utils.errors import UserError


def test_atomic_save_keeps_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "model.pth"
    atomic_save({"w": torch.ones(3)}, str(path))

    def broken_save(obj, f):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        atomic_save({"w": torch.zeros(3)}, str(path))
    monkeypatch.undo()
    assert torch.equal(load_file(str(path))["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["model.pth"]   # no temporary left behind


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_atomic_files_get_the_mode_of_a_normally_written_file(tmp_path, umask):
    old = os.umask(umask)
    try:
        (tmp_path / "plain.txt").write_text("x")
        atomic_save({"w": torch.ones(1)}, str(tmp_path / "model.pth"))
        atomic_write_text("{}", str(tmp_path / "metrics.json"))
        Checkpointer(str(tmp_path)).save("checkpoint_ep1", {"epoch": 1})
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
    assert modes == dict.fromkeys(["plain.txt", "model.pth", "metrics.json", "checkpoint_ep1.pth",
                                   "last_checkpoint"], 0o666 & ~umask)


def test_checkpointer_pointer_and_find_last(tmp_path):
    run = tmp_path / "20260101-000000"
    run.mkdir()
    ck = Checkpointer(str(run))
    ck.save("checkpoint_ep1", {"epoch": 1})
    ck.save("checkpoint_ep2", {"epoch": 2})
    assert (run / "last_checkpoint").read_text().strip() == "checkpoint_ep2.pth"
    assert Checkpointer.find_last(str(run)).endswith("checkpoint_ep2.pth")
    assert Checkpointer.find_last(str(tmp_path)).endswith("checkpoint_ep2.pth")  # newest run
    with pytest.raises(UserError, match="last_checkpoint"):
        Checkpointer.find_last(str(tmp_path / "empty"))


def test_load_file_errors_name_the_file(tmp_path):
    with pytest.raises(UserError, match="not found: '.*missing.pth'"):
        load_file(str(tmp_path / "missing.pth"))
    bad = tmp_path / "truncated.pth"
    atomic_save({"w": torch.randn(100)}, str(bad))
    bad.write_bytes(bad.read_bytes()[:50])
    with pytest.raises(UserError, match="truncated.pth"):
        load_file(str(bad))


def test_load_file_refuses_what_is_not_a_checkpoint_without_unsafe_advice(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(bytes(range(7, 250)) * 40)
    with pytest.raises(UserError, match=r"'.*junk.pth' is not a PyTorch checkpoint") as e:
        load_file(str(junk))
    unsafe = tmp_path / "unsafe.pth"
    torch.save({"obj": UserError("a Python object a safe load refuses")}, str(unsafe))
    with pytest.raises(UserError, match=r"Cannot load the checkpoint '.*unsafe.pth' safely"
                       ) as e2:
        load_file(str(unsafe))
    for err in (e, e2):
        assert "weights_only" not in str(err.value) and "file an issue" not in str(err.value)
    with pytest.raises(UserError, match=r"MODEL.PRETRAIN_PATH file not found: '.*absent.pth'"):
        load_file(str(tmp_path / "absent.pth"), "MODEL.PRETRAIN_PATH file")


def test_rng_state_round_trip_through_a_file(tmp_path):
    state = capture_rng_state()
    atomic_save({"rng": state}, str(tmp_path / "r.pth"))
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    restore_rng_state(load_file(str(tmp_path / "r.pth"))["rng"])   # weights_only load
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
