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


@pytest.mark.parametrize(("saved", "visible"), [(8, 1), (1, 2), (2, 0)])
def test_cuda_rng_states_restore_for_the_gpus_there_are(monkeypatch, caplog, saved, visible):
    """A run trained on 8 GPUs resumes with one visible (and the other way round): the states of
    the GPUs both have are restored, the others are left alone, and the log says so."""
    restored = {}

    def set_rng_state(state, device):
        if not 0 <= device < visible:
            raise IndexError(f"no GPU {device}")
        restored[device] = state

    monkeypatch.setattr(torch.cuda, "is_available", lambda: visible > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: visible)
    monkeypatch.setattr(torch.cuda, "set_rng_state", set_rng_state)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all",
                        lambda states: [set_rng_state(s, i) for i, s in enumerate(states)])
    state = {**capture_rng_state_cpu(), "cuda": [torch.full((4,), i, dtype=torch.uint8)
                                                 for i in range(saved)]}
    with caplog.at_level("INFO", logger="reid.train"):
        restore_rng_state(state)
    assert sorted(restored) == list(range(min(saved, visible)))
    for i, s in restored.items():
        assert torch.equal(s, state["cuda"][i])
    assert f"{saved} GPU(s) and this process sees {visible}" in caplog.text


def capture_rng_state_cpu() -> dict:
    """The CPU part of :func:`capture_rng_state` (this machine may have no GPU)."""
    return {k: v for k, v in capture_rng_state().items() if k != "cuda"}


def test_a_folder_given_as_a_checkpoint_is_named_as_a_folder(tmp_path):
    with pytest.raises(UserError, match="is a folder, not a file"):
        load_file(str(tmp_path), "checkpoint (TEST.WEIGHT)")


def test_stale_temporary_files_are_removed(tmp_path):
    ck = Checkpointer(str(tmp_path))
    ck.save("checkpoint_ep1", {"a": torch.zeros(2)})
    (tmp_path / ".tmp-0123456789abcdef.pth").write_bytes(b"partial")
    (tmp_path / "notes.tmp").write_text("kept")
    assert ck.remove_stale_files() == [str(tmp_path / ".tmp-0123456789abcdef.pth")]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_ep1.pth",
                                                          "last_checkpoint", "notes.tmp"]
