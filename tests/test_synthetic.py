"""The synthetic dataset writer (tools.synthetic): exact on-disk formats, determinism, content,
safety, and its first-use write by the commands (ensure_dataset; data/ only reads)."""

from __future__ import annotations

import ast
import csv
import logging
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import scipy.io as sio
from PIL import Image

from config import get_cfg
from data import build_dataset
from data.attributes import DUKE_SCHEMA, KEY_COLUMNS, MARS_SCHEMA
from engine.defaults import SYNTHETIC_FORMATS, load_cfg
from tools import synthetic as synthetic_tool
from tools.synthetic import MARKER_NAME, write_synthetic_dataset
from tools.synthetic import command as synthetic_command
from tools.synthetic import plan as synthetic_plan
from tools.synthetic import render as synthetic_render
from tools.synthetic import write as synthetic_write
from utils.errors import UserError

ROOT = Path(__file__).resolve().parents[1]

MARS_NAME = re.compile(r"^(\d{4}|00-1)C([1-6])T(\d{4})F(\d{3})\.jpg$")
DUKE_NAME = re.compile(r"^(\d{4})_C([1-8])_F(\d{4})_X\d{5}\.jpg$")
MARS_HEADER = [*KEY_COLUMNS, *MARS_SCHEMA.names]
DUKE_HEADER = [*KEY_COLUMNS, *DUKE_SCHEMA.names]
SMALL = {"ids": 8, "tracklets": 4, "frames": 4, "size": (32, 16)}


def read_csv(path: Path) -> tuple[list[str], np.ndarray]:
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    return rows[0], np.array(rows[1:], dtype=np.int64)


def mars_tracks(root: Path, split: str) -> tuple[list[str], np.ndarray]:
    names = (root / "info" / f"{split}_name.txt").read_text().split()
    mat = sio.loadmat(root / "info" / f"tracks_{split}_info.mat")
    return names, mat[f"track_{split}_info"]


@pytest.fixture(scope="module")
def mars(tmp_path_factory) -> Path:
    return write_synthetic_dataset(tmp_path_factory.mktemp("syn") / "mars", "mars", seed=3,
                                   **SMALL)


@pytest.fixture(scope="module")
def duke(tmp_path_factory) -> Path:
    return write_synthetic_dataset(tmp_path_factory.mktemp("syn") / "duke", "duke", seed=3,
                                   **SMALL)


def test_mars_track_tables_match_name_lists_and_files(mars):
    for split, folder in (("train", "bbox_train"), ("test", "bbox_test")):
        names, table = mars_tracks(mars, split)
        assert table.ndim == 2 and table.shape[1] == 4
        starts, ends = table[:, 0], table[:, 1]
        lengths = ends - starts + 1
        assert starts[0] == 1 and np.all(starts[1:] == ends[:-1] + 1)  # contiguous, 1-based
        assert lengths.min() >= 3 and lengths.sum() == len(names)
        on_disk = sorted(p.name for p in (mars / folder).glob("*/*.jpg"))
        assert on_disk == sorted(names)
        for start, end, pid, cam in table:
            frames = names[start - 1:end]
            parts = [MARS_NAME.match(n).groups() for n in frames]
            assert {p[0] for p in parts} == {"00-1" if pid == -1 else f"{pid:04d}"}
            assert {int(p[1]) for p in parts} == {cam}
            assert len({p[2] for p in parts}) == 1  # one tracklet number per row
            assert [int(p[3]) for p in parts] == list(range(1, len(frames) + 1))
            assert all((mars / folder / n[:4] / n).is_file() for n in frames)
        # Each (pid, camera, tracklet number) is one row.
        keys = Counter((n[:4], n[5], n[7:11]) for n in names)
        assert len(keys) == len(table)


def test_mars_splits_queries_junk_and_distractors(mars):
    _, train = mars_tracks(mars, "train")
    _, test = mars_tracks(mars, "test")
    query = sio.loadmat(mars / "info" / "query_IDX.mat")["query_IDX"]
    assert query.shape[0] == 1
    query = query.ravel()
    train_pids, test_pids = set(train[:, 2]), set(test[:, 2])
    assert len(train_pids) == SMALL["ids"] // 2 and min(train_pids) > 0
    assert train_pids.isdisjoint(test_pids)
    assert {-1, 0} <= test_pids and len(test_pids - {-1, 0}) == SMALL["ids"] // 2
    assert np.all(np.diff(test[:, 2]) >= 0)  # sorted by pid: junk, distractors, identities
    assert query.min() >= 1 and query.max() <= len(test) and len(set(query)) == len(query)
    q = test[query - 1]
    assert np.all(q[:, 2] > 0)
    assert set(q[:, 2]) == test_pids - {-1, 0}  # every test identity is queried
    assert len({(p, c) for p, c in q[:, 2:]}) == len(q)  # at most one query per camera
    gallery = np.delete(test, query - 1, axis=0)
    for pid, cam in q[:, 2:]:  # a match on another camera exists in the gallery
        assert np.any((gallery[:, 2] == pid) & (gallery[:, 3] != cam))


def test_mars_csv_rows_and_values(mars):
    header, rows = read_csv(mars / "mars_attributes.csv")
    assert header == MARS_HEADER
    assert rows.shape[1] == 3 + 21
    names = (mars / "info" / "train_name.txt").read_text().split()
    names += (mars / "info" / "test_name.txt").read_text().split()
    expected = {(int(n[:4]), int(n[5]), int(n[7:11])) for n in names if not n.startswith(("00-1",
                                                                                       "0000"))}
    keys = [tuple(r) for r in rows[:, :3]]
    assert len(set(keys)) == len(keys) and set(keys) == expected
    assert rows[:, 3:].min() >= 0 and np.all(rows[:, 3:].max(axis=0) < MARS_SCHEMA.flat_lens)
    # Identity attributes are per person, so constant over a person's tracklets.
    for pid in np.unique(rows[:, 0]):
        assert len({tuple(r) for r in rows[rows[:, 0] == pid, 12:]}) == 1


def test_mars_images(mars):
    image = Image.open(next((mars / "bbox_train").glob("*/*.jpg")))
    assert image.mode == "RGB" and image.size == (16, 32)  # (W, H)


def duke_tracklets(root: Path, folder: str) -> dict[tuple[int, int], list[str]]:
    out = {}
    for tdir in sorted((root / folder).glob("*/*")):
        out[(int(tdir.parent.name), int(tdir.name))] = sorted(p.name for p in tdir.iterdir())
    return out


def test_duke_layout_queries_and_csv(duke):
    folders = {f: duke_tracklets(duke, f) for f in ("train", "query", "gallery")}
    cams = {}
    for tracklets in folders.values():
        for (pid, tnum), frames in tracklets.items():
            assert len(frames) >= 3
            parts = [DUKE_NAME.match(n).groups() for n in frames]
            assert {int(p[0]) for p in parts} == {pid}
            assert len({p[1] for p in parts}) == 1 and all(n[6] == p[1] for n, p in
                                                          zip(frames, parts))
            assert [int(p[2]) for p in parts] == list(range(1, len(frames) + 1))
            cams[(pid, tnum)] = int(parts[0][1])
    train_pids = {p for p, _ in folders["train"]}
    gallery_pids = {p for p, _ in folders["gallery"]}
    query_pids = [p for p, _ in folders["query"]]
    assert len(train_pids) == SMALL["ids"] // 2 and train_pids.isdisjoint(gallery_pids)
    assert sorted(query_pids) == sorted(set(query_pids)) and len(query_pids) == SMALL["ids"] // 2
    assert len(gallery_pids) > len(query_pids)  # gallery-only identities
    for key, frames in folders["query"].items():  # query tracklets are in the gallery too
        assert folders["gallery"][key] == frames
        for name in frames:
            q = (duke / "query" / f"{key[0]:04d}" / f"{key[1]:04d}" / name).read_bytes()
            assert q == (duke / "gallery" / f"{key[0]:04d}" / f"{key[1]:04d}" / name).read_bytes()
        assert any(p == key[0] and cams[(p, t)] != cams[key] for p, t in folders["gallery"])
    tnums = [t for f in ("train", "gallery") for _, t in folders[f]]
    assert len(tnums) == len(set(tnums))  # tracklet numbers are unique in the dataset
    header, rows = read_csv(duke / "duke_attributes.csv")
    assert header == DUKE_HEADER and "muti-person" in header
    expected = {(p, cams[(p, t)], t) for f in ("train", "gallery") for p, t in folders[f]}
    keys = [tuple(r) for r in rows[:, :3]]
    assert len(keys) == len(set(keys)) and set(keys) == expected
    assert rows[:, 3:].min() >= 0 and np.all(rows[:, 3:].max(axis=0) < DUKE_SCHEMA.flat_lens)


def test_headers_equal_the_real_files(shared_data):
    with open(shared_data / "mars" / "mars_attributes.csv", newline="") as fh:
        assert next(csv.reader(fh)) == MARS_HEADER
    with open(shared_data / "duke" / "duke_attributes.csv", newline="") as fh:
        assert next(csv.reader(fh)) == DUKE_HEADER


@pytest.mark.parametrize("schema", [MARS_SCHEMA, DUKE_SCHEMA])
def test_every_schema_column_is_a_rendered_trait(schema):
    traits = [synthetic_plan.CSV_TRAITS[c] for c in schema.groups[1]]
    assert len(set(traits)) == len(traits) and set(traits) <= set(synthetic_plan.TRAITS)
    classes = dict(zip(schema.names, schema.flat_lens, strict=True))
    assert classes["top color"] == len(synthetic_render.TOP_PALETTE)


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file's bytes except the .mat files, whose header holds a timestamp."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.suffix != ".mat"}


def test_deterministic_for_a_seed_and_different_for_another(tmp_path, mars):
    again = write_synthetic_dataset(tmp_path / "again", "mars", seed=3, **SMALL)
    first, second = snapshot(mars), snapshot(again)
    assert first.keys() == second.keys() and first == second
    for name in ("tracks_train_info.mat", "tracks_test_info.mat", "query_IDX.mat"):
        a, b = sio.loadmat(mars / "info" / name), sio.loadmat(again / "info" / name)
        key = next(k for k in a if not k.startswith("__"))
        np.testing.assert_array_equal(a[key], b[key])
    other = snapshot(write_synthetic_dataset(tmp_path / "other", "mars", seed=4, **SMALL))
    assert other["mars_attributes.csv"] != first["mars_attributes.csv"]
    common = sorted(k for k in first.keys() & other.keys() if k.endswith(".jpg"))
    assert common and any(first[k] != other[k] for k in common)


def test_refuses_a_foreign_folder_and_replaces_a_previous_dataset(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="not a previous synthetic dataset"):
        write_synthetic_dataset(foreign, "mars", ids=2, tracklets=2, frames=1, size=(16, 8))
    assert (foreign / "notes.txt").read_text() == "keep me"
    a_file = tmp_path / "file"
    a_file.write_text("")
    with pytest.raises(UserError, match="not a folder"):
        write_synthetic_dataset(a_file, "mars", ids=2, tracklets=2, frames=1, size=(16, 8))
    empty = tmp_path / "empty"
    empty.mkdir()
    write_synthetic_dataset(empty, "duke", ids=2, tracklets=2, frames=1, size=(16, 8))
    (empty / "stale.txt").write_text("from the old dataset")
    write_synthetic_dataset(empty, "duke", ids=2, tracklets=2, frames=1, size=(16, 8))
    assert not (empty / "stale.txt").exists()          # the same arguments: rewritten
    with pytest.raises(UserError, match=r"other arguments \(format duke -> mars\).*--overwrite"):
        write_synthetic_dataset(empty, "mars", ids=2, tracklets=2, frames=1, size=(16, 8))
    assert (empty / "train").is_dir()                   # untouched
    write_synthetic_dataset(empty, "mars", ids=2, tracklets=2, frames=1, size=(16, 8),
                            overwrite=True)
    assert not (empty / "train").exists()
    assert (empty / "info" / "train_name.txt").is_file() and (empty / MARKER_NAME).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "file", "foreign"]


def test_command_refuses_another_synthetic_dataset_without_overwrite(tmp_path, capsys):
    out = tmp_path / "ds"
    small = ["--ids", "2", "--tracklets", "2", "--frames", "1", "--size", "16", "8"]
    assert synthetic_tool.main(["--format", "mars", "--out", str(out), *small]) == 0
    before = snapshot(out)
    capsys.readouterr()
    assert synthetic_tool.main(["--format", "duke", "--out", str(out), *small]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: Refusing to replace the synthetic dataset in ")
    assert "format mars -> duke" in captured.err and "--overwrite" in captured.err
    assert len(captured.err.splitlines()) == 1
    assert snapshot(out) == before
    assert synthetic_tool.main(["--format", "mars", "--out", str(out), "--seed", "1",
                                *small]) == 2
    assert "seed 0 -> 1" in capsys.readouterr().err
    assert synthetic_tool.main(["--format", "mars", "--out", str(out), *small]) == 0
    assert synthetic_tool.main(["--format", "duke", "--out", str(out), "--overwrite",
                                *small]) == 0
    assert (out / "duke_attributes.csv").is_file() and not (out / "info").exists()


def unwritable_outs(tmp_path: Path) -> list[tuple[str, Path]]:
    """(case, --out) of places that cannot hold a dataset: under a file, under /proc."""
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    return [("under a file", a_file / "ds"), ("under a file, deeper", a_file / "x" / "ds"),
            ("/proc", Path("/proc") / f"reid_synthetic_{os.getpid()}" / "ds")]


def test_unwritable_out_is_one_error_line_before_any_work(tmp_path, capsys, monkeypatch):
    def no_work(*args, **kwargs):
        raise AssertionError("planning started")

    monkeypatch.setattr(synthetic_write, "plan_dataset", no_work)
    for case, out in unwritable_outs(tmp_path):
        assert synthetic_tool.main(["--out", str(out)]) == 2, case
        err = capsys.readouterr().err
        assert err.startswith("error: Cannot write the synthetic dataset to ") and str(out) in err
        assert len(err.splitlines()) == 1 and "Traceback" not in err, case
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


def test_permission_denied_is_one_error_line(tmp_path, capsys, monkeypatch):
    """A folder that refuses new entries (as a read-only one does for a non-root user)."""
    ro = tmp_path / "ro"
    ro.mkdir()
    real_mkdir = os.mkdir

    def refuse(path, *args, **kwargs):
        if Path(path).parent == ro:
            raise PermissionError(13, "Permission denied", str(path))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", refuse)
    assert synthetic_tool.main(["--out", str(ro / "ds")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: Cannot write the synthetic dataset to {ro / 'ds'} "
                          f"({ro}/.ds.tmp-")
    assert err.rstrip().endswith("Permission denied). Choose an output folder you can write to.")
    assert len(err.splitlines()) == 1 and list(ro.iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only folder")
def test_read_only_out_is_one_error_line(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        assert synthetic_tool.main(["--out", str(ro / "ds")]) == 2
    finally:
        ro.chmod(0o755)
    err = capsys.readouterr().err
    assert err.startswith("error: Cannot write the synthetic dataset to ") and str(ro) in err
    assert len(err.splitlines()) == 1


def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(synthetic_write, "_write_csv", crash)
    with pytest.raises(KeyboardInterrupt):
        write_synthetic_dataset(tmp_path / "ds", "mars", ids=2, tracklets=2, frames=1,
                                size=(16, 8))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kwargs", [{"fmt": "market"}, {"ids": 1}, {"tracklets": 1},
                                    {"frames": 0}, {"size": (8, 8)}])
def test_bad_arguments_are_user_errors(tmp_path, kwargs):
    with pytest.raises(UserError):
        write_synthetic_dataset(tmp_path / "ds", **kwargs)
    assert not (tmp_path / "ds").exists()


def test_command_line(tmp_path, capsys):
    out = tmp_path / "duke"
    args = ["--format", "duke", "--out", str(out), "--ids", "2", "--tracklets", "2",
            "--frames", "2", "--size", "16", "8"]
    assert synthetic_tool.main(args) == 0
    assert f"wrote a synthetic duke dataset to {out}" in capsys.readouterr().out
    assert (out / "duke_attributes.csv").is_file()
    assert Image.open(next((out / "train").glob("*/*/*.jpg"))).size == (8, 16)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x").write_text("")
    assert synthetic_tool.main(["--out", str(tmp_path / "other")]) == 2
    assert "not a previous synthetic dataset" in capsys.readouterr().err


@pytest.mark.parametrize("module", ["tools.synthetic", "data.synthetic"])
def test_python_m_commands_write_a_dataset(tmp_path, module):
    """``python -m tools.synthetic`` and the public spelling ``python -m data.synthetic``."""
    out = tmp_path / "mars"
    r = subprocess.run([sys.executable, "-m", module, "--out", str(out), "--ids", "2",
                        "--tracklets", "2", "--frames", "1", "--size", "16", "8"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"wrote a synthetic mars dataset to {out}\n"
    assert (out / MARKER_NAME).is_file() and (out / "mars_attributes.csv").is_file()


def render_one(people: dict[str, np.ndarray], view: int) -> np.ndarray:
    """Render person 0 in the middle of a gray 64x32 frame, legs together."""
    img = np.full((1, 64, 32, 3), 0.5, np.float32)
    one = np.ones(1, np.float32)
    synthetic_render.draw_person(img, people, np.zeros(1, np.int64), 16 * one, 62 * one,
                                 58 * one, one, np.array([view]), one, 0 * one)
    return img[0]


def plain_person() -> dict[str, np.ndarray]:
    """One adult figure with every attribute class 0, no print and no logo."""
    people = synthetic_plan.sample_people(np.random.default_rng(0), 1, MARS_SCHEMA)
    for key in synthetic_plan.TRAITS:
        people[key][:] = 0
    people["age"][:] = 2
    people["print_kind"][:] = 0
    people["logo_on"][:] = 0
    people["top_jitter"][:] = 0
    people["height_jitter"][:] = 1
    return people


@pytest.mark.parametrize("trait", synthetic_plan.TRAITS)
def test_every_identity_attribute_changes_the_figure(trait):
    base = plain_person()
    changed = {k: v.copy() for k, v in base.items()}
    changed[trait][:] = 1 if trait != "age" else 0
    diff = [np.abs(render_one(changed, view) - render_one(base, view)).max() for view in (0, 1)]
    assert max(diff) > 0.1


def test_top_colour_is_the_rendered_torso_colour():
    for colour, rgb in enumerate(synthetic_render.TOP_PALETTE):
        person = plain_person()
        person["top_color"][:] = colour
        chest = render_one(person, 0)[18:26, 15:17].reshape(-1, 3).mean(axis=0)
        np.testing.assert_allclose(chest, rgb, atol=0.02)


def render_tracklet(nuisance: list[int]) -> np.ndarray:
    """Frames (6, 32, 16, 3) of one tracklet of person 0 with the given ID-irrelevant classes."""
    rng = np.random.default_rng(5)
    people = synthetic_plan.sample_people(rng, 3, MARS_SCHEMA)
    cams = synthetic_plan.sample_cameras(rng, 6)
    scenes = synthetic_render.camera_scenes(rng, cams, (32, 16))
    tracks = {"person": np.array([0]), "camera": np.array([2]), "length": np.array([6]),
              "nuisance": np.array([nuisance])}
    fp = synthetic_plan.frame_parameters(rng, tracks, 3, cams, (32, 16))
    return synthetic_render.render_chunk(fp, people, cams, scenes).astype(np.int16)


@pytest.mark.parametrize("column,value", [(0, 3), (1, 4)] + [(c, 1) for c in range(2, 9)])
def test_every_tracklet_attribute_changes_the_frames(column, value):
    base = [0] * 9  # walking, frontal, no other nuisance
    changed = list(base)
    changed[column] = value
    frames = render_tracklet(base)
    assert np.array_equal(frames, render_tracklet(base))
    assert np.abs(render_tracklet(changed) - frames).max() > 60


def test_duke_with_many_tracklets_per_identity(tmp_path):
    root = write_synthetic_dataset(tmp_path / "duke", "duke", ids=3, tracklets=9, frames=1,
                                   size=(16, 8))
    train = duke_tracklets(root, "train")
    assert len(train) == 9 and len(duke_tracklets(root, "gallery")) == 2 * 9 + 1


# ------------------------------------------------------------- first use, at the command level
def first_use_cfg(root: Path, name: str = "mars", if_missing: bool = True):
    """A tiny synthetic dataset config (DATASETS.SYNTHETIC.IF_MISSING) at ``root``."""
    return load_cfg(None, ["DATASETS.NAME", name, "DATASETS.ROOT_DIR", str(root),
                           "DATASETS.SYNTHETIC.IF_MISSING", str(if_missing),
                           "DATASETS.SYNTHETIC.IDS", "4", "DATASETS.SYNTHETIC.TRACKLETS", "2",
                           "DATASETS.SYNTHETIC.FRAMES", "2", "DATASETS.SYNTHETIC.SIZE",
                           "[16, 8]", "DATASETS.SYNTHETIC.SEED", "5"])


@pytest.fixture
def data_log():
    """The messages logged under reid.data (the "reid" logger may not propagate)."""
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    log = logging.getLogger("reid.data")
    old_level = log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    yield records
    log.removeHandler(handler)
    log.setLevel(old_level)


def test_building_a_dataset_writes_nothing(tmp_path):
    """data.build_dataset only reads: a missing root is an error even with IF_MISSING."""
    root = tmp_path / "missing"
    with pytest.raises(UserError):
        build_dataset(first_use_cfg(root))
    assert not root.exists() and list(tmp_path.iterdir()) == []


def test_ensure_dataset_writes_a_missing_root_once(tmp_path, monkeypatch, data_log):
    barriers = []
    monkeypatch.setattr(synthetic_command, "synchronize", lambda: barriers.append(1))
    root = tmp_path / "demo"
    cfg = first_use_cfg(root)
    synthetic_tool.ensure_dataset(cfg)
    assert data_log == [f"DATASETS.ROOT_DIR {root} does not exist: writing a synthetic mars "
                        "dataset (4 ids x 2 tracklets x 2 frames, 16x8, seed 5)"]
    assert barriers == [1]
    assert snapshot(root) == snapshot(write_synthetic_dataset(
        tmp_path / "direct", "mars", ids=4, tracklets=2, frames=2, size=(16, 8), seed=5))
    synthetic_tool.ensure_dataset(cfg)                # the folder exists: nothing to do
    assert len(data_log) == 1 and barriers == [1]
    assert build_dataset(cfg).num_train_pids == 2


def test_ensure_dataset_writes_on_rank_0_only_and_every_rank_waits(tmp_path, monkeypatch,
                                                                   data_log):
    barriers = []
    monkeypatch.setattr(synthetic_command, "synchronize", lambda: barriers.append(1))
    monkeypatch.setattr(synthetic_command, "is_main_process", lambda: False)
    root = tmp_path / "demo"
    synthetic_tool.ensure_dataset(first_use_cfg(root))
    assert not root.exists() and data_log == [] and barriers == [1]


def test_ensure_dataset_leaves_other_configs_alone(tmp_path, monkeypatch):
    monkeypatch.setattr(synthetic_command, "synchronize",
                        lambda: pytest.fail("no barrier without a write"))
    synthetic_tool.ensure_dataset(first_use_cfg(tmp_path / "off", if_missing=False))
    cfg = get_cfg()                                   # empty ROOT_DIR: build_dataset names it
    cfg.DATASETS.SYNTHETIC.IF_MISSING = True
    synthetic_tool.ensure_dataset(cfg)
    (tmp_path / "there").mkdir()
    synthetic_tool.ensure_dataset(first_use_cfg(tmp_path / "there"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["there"]
    assert list((tmp_path / "there").iterdir()) == []
    cfg = get_cfg()                                   # a config that skipped validation
    cfg.merge_from_list(["DATASETS.NAME", "prid", "DATASETS.ROOT_DIR", str(tmp_path / "prid"),
                         "DATASETS.SYNTHETIC.IF_MISSING", True])
    with pytest.raises(UserError, match="IF_MISSING writes the mars/duke/folder formats only; "
                                        "DATASETS.NAME is 'prid'"):
        synthetic_tool.ensure_dataset(cfg)


def test_the_validated_layouts_are_the_writers():
    """engine.load_cfg refuses IF_MISSING for a layout the writer lacks (its copy of the list)."""
    assert SYNTHETIC_FORMATS == tuple(synthetic_plan.FORMATS)


def test_every_command_that_reads_a_config_dataset_writes_it_first():
    """main_baseline.py and every tool that builds the dataset of a config call
    ensure_dataset (data/ writes nothing); tools.verify only reports a missing folder."""
    reads = re.compile(r"\b(build_dataset|make_data_loaders)\(")
    commands = [ROOT / "main_baseline.py", *sorted((ROOT / "tools").glob("*.py"))]
    readers = [p for p in commands if reads.search(p.read_text())]
    assert {p.name for p in readers} >= {"main_baseline.py", "export_features.py",
                                         "export_onnx.py", "visualize.py"}
    for path in readers:
        assert "ensure_dataset(" in path.read_text(), path.name
    assert "ensure_dataset" not in (ROOT / "tools" / "verify.py").read_text()
    for path in (ROOT / "data").rglob("*.py"):
        assert "write_synthetic_dataset" not in path.read_text(), path


def test_data_synthetic_is_only_the_public_command():
    """``data/synthetic/``: the ``python -m data.synthetic`` shim and a docstring."""
    folder = ROOT / "data" / "synthetic"
    assert sorted(p.name for p in folder.glob("*.py")) == ["__init__.py", "__main__.py"]
    tree = ast.parse((folder / "__init__.py").read_text())
    assert len(tree.body) == 1 and isinstance(tree.body[0].value, ast.Constant)
