"""Dataset parsers: tiny folders in the real layouts, the real MARS split and attribute CSVs."""

import csv
import inspect
import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.io as sio

from config import attributes_on, load_cfg
from data.attributes import DUKE_SCHEMA, MARS_SCHEMA, check_attribute_csv, load_attribute_table
from data.build import attribute_mode, check_image_files
from data.datasets import (
    DATASETS,
    ILIDSVID,
    PRID2011,
    DukeVideo,
    FolderDataset,
    Mars,
    Tracklet,
    VideoReIDDataset,
    dataset_class_of_frame,
    frame_fix,
)
from data.datasets.base import AttributeMatcher, AttributeRules, make_tracklets
from data.transforms import read_image
from tests.helpers import (
    TINY_DUKE,
    TINY_MARS_QUERY_ROWS,
    TINY_MARS_TEST,
    TINY_MARS_TRAIN,
    duke_attrs,
    mars_attrs,
    mars_name,
    write_frame,
    write_tiny_duke,
    write_tiny_mars,
)
from utils.errors import UserError

# ----------------------------------------------------------------------------- MARS


def test_mars_tiny_tracklets_relabelling_junk_and_distractors(tmp_path, caplog):
    root = write_tiny_mars(tmp_path / "mars")
    with caplog.at_level(logging.INFO, logger="reid.data"):
        ds = Mars(str(root))

    def paths(split, pid, cam, tid, n):
        return tuple(str(root / f"bbox_{split}" / mars_name(pid, cam, tid, k)[:4]
                         / mars_name(pid, cam, tid, k)) for k in range(1, n + 1))

    labels = {3: 0, 7: 1, 12: 2}
    assert ds.train == [Tracklet(paths("train", p, c, t, n), labels[p], c - 1,
                                 tuple(mars_attrs(p, c, t)), (p, c, t))
                        for p, c, t, n in TINY_MARS_TRAIN]
    assert ds.num_train_pids == 3
    assert ds.query == [Tracklet(paths("test", p, c, t, n), p, c - 1, tuple(mars_attrs(p, c, t)),
                                 (p, c, t))
                        for p, c, t, n in (TINY_MARS_TEST[2], TINY_MARS_TEST[4])]
    unknown = (-1,) * 21
    expected_gallery = [Tracklet(paths("test", p, c, t, n), p, c - 1,
                                 tuple(mars_attrs(p, c, t)) if p > 0 else unknown, (p, c, t))
                        for i, (p, c, t, n) in enumerate(TINY_MARS_TEST)
                        if i + 1 not in TINY_MARS_QUERY_ROWS and p != -1]
    assert ds.gallery == expected_gallery
    img_paths, pid, camid, attrs = ds.train[0][:4]                # the tracklet 4-tuple
    assert (img_paths, pid, camid, attrs) == (ds.train[0].img_paths, 0, 0, ds.train[0][3])
    assert [t[1] for t in ds.gallery].count(0) == 2
    assert ds.attr_lens == [[5, 6, 2, 2, 2, 2, 2, 2, 2], [9, 10, 4, 2, 2, 2, 2, 2, 2, 2, 2, 2]]
    assert ds.attr_names[:2] == ["motion", "pose"] and ds.attr_names[-1] == "bottom type"
    assert ds.attr_groups == [list(MARS_SCHEMA.groups[0]), list(MARS_SCHEMA.groups[1])]
    log = caplog.text
    assert "MARS statistics" in log
    assert "train    |       3 |           5 |        20" in log
    assert "gallery  |       4 |           5 |        20" in log


def test_mars_without_attributes_needs_no_csv(tmp_path):
    root = write_tiny_mars(tmp_path / "mars", images=False, csv_rows=False)
    ds = Mars(str(root), attributes=False, verbose=False)
    assert ds.attr_lens is None and ds.attr_names == [] and ds.attr_groups == []
    assert all(t[3] == () for t in ds.train + ds.query + ds.gallery)


def test_mars_lists_every_missing_path(tmp_path):
    root = write_tiny_mars(tmp_path / "mars", images=False)
    shutil.rmtree(root / "bbox_test")
    (root / "info" / "query_IDX.mat").unlink()
    (root / "mars_attributes.csv").unlink()
    with pytest.raises(UserError) as e:
        Mars(str(root))
    msg = str(e.value)
    assert "3 required path(s) are missing" in msg
    for p in ("bbox_test", "query_IDX.mat", "mars_attributes.csv"):
        assert str(root / ("info/" + p if p.endswith(".mat") else p)) in msg
    assert "bbox_train" not in msg.split("Get the images")[0]
    assert "DATASETS.ROOT_DIR" in msg


@pytest.mark.parametrize("drop", [(7, 1, 1), (5, 2, 7)])
def test_mars_missing_attribute_row_names_the_tracklet(tmp_path, drop):
    root = write_tiny_mars(tmp_path / "mars", images=False)
    df = pd.read_csv(root / "mars_attributes.csv")
    keep = ~((df.person_id == drop[0]) & (df.camera_id == drop[1]) & (df.tracklets_id == drop[2]))
    df[keep].to_csv(root / "mars_attributes.csv", index=False)
    with pytest.raises(UserError, match=rf"pid {drop[0]}, camera {drop[1]}, tracklet {drop[2]}"):
        Mars(str(root), verbose=False)


def test_mars_missing_gallery_row_is_unknown(tmp_path, caplog):
    root = write_tiny_mars(tmp_path / "mars", images=False)
    df = pd.read_csv(root / "mars_attributes.csv")
    df[~((df.person_id == 9) & (df.camera_id == 5))].to_csv(root / "mars_attributes.csv",
                                                            index=False)
    ds = Mars(str(root), verbose=False)
    assert ds.gallery[-1][1] == 9 and ds.gallery[-1][3] == (-1,) * 21
    assert "1 gallery tracklet(s)" in caplog.text


def test_mars_track_with_two_pids_is_rejected(tmp_path):
    root = write_tiny_mars(tmp_path / "mars", images=False)
    names = (root / "info" / "train_name.txt").read_text().split()
    names[4] = names[4].replace("0003C2", "0004C2")      # second frame of row 2
    (root / "info" / "train_name.txt").write_text("\n".join(names))
    with pytest.raises(UserError, match=r"tracks_train_info.mat' row 2: name 0004C2T0002F002"):
        Mars(str(root), verbose=False)


def test_mars_bad_name_and_table_errors(tmp_path):
    root = write_tiny_mars(tmp_path / "mars", images=False)
    names = (root / "info" / "test_name.txt").read_text().split()
    names[2] = "garbage.jpg"
    (root / "info" / "test_name.txt").write_text("\n".join(names))
    with pytest.raises(UserError, match=r"test_name.txt', name 3: 'garbage.jpg'"):
        Mars(str(root), verbose=False)
    root2 = write_tiny_mars(tmp_path / "mars2", images=False)
    sio.savemat(root2 / "info" / "tracks_train_info.mat",
                {"track_train_info": np.array([[1, 99, 3, 1]])})
    with pytest.raises(UserError, match=r"row 1: frames 1..99 are outside the 20 names"):
        Mars(str(root2), verbose=False)


def test_mars_real_split(shared_data, tmp_path):
    """The real split: rebuild the name lists as ../shared/data/README.md explains."""
    src = shared_data / "mars"
    root = tmp_path / "mars"
    (root / "info").mkdir(parents=True)
    (root / "bbox_train").mkdir()
    (root / "bbox_test").mkdir()
    for f in ("tracks_train_info.mat", "tracks_test_info.mat", "query_IDX.mat"):
        os.symlink(src / "info" / f, root / "info" / f)
    os.symlink(src / "mars_attributes.csv", root / "mars_attributes.csv")
    df = pd.read_csv(src / "mars_attributes.csv")
    available = {k: sorted(g.tolist()) for k, g in
                 df.groupby(["person_id", "camera_id"])["tracklets_id"]}
    for split, key in (("train", "track_train_info"), ("test", "track_test_info")):
        table = sio.loadmat(src / "info" / f"tracks_{split}_info.mat")[key]
        used: dict = {}
        lines = []
        for start, end, pid, cam in table.tolist():
            k = (pid, cam) if pid > 0 else pid
            used[k] = used.get(k, 0) + 1
            tid = available[k][used[k] - 1] if pid > 0 else used[k]
            prefix = mars_name(pid, cam, tid, 0)[:11]
            lines += [f"{prefix}F{f:03d}.jpg" for f in range(1, end - start + 2)]
        (root / "info" / f"{split}_name.txt").write_text("\n".join(lines) + "\n")

    t0 = time.perf_counter()
    ds = Mars(str(root), verbose=False)
    seconds = time.perf_counter() - t0
    print(f"\nMARS real split parsed in {seconds:.2f} s")
    assert (ds.num_train_pids, len(ds.train)) == (625, 8298)
    assert (len({t[1] for t in ds.query}), len(ds.query)) == (626, 1980)
    assert len(ds.gallery) == 9330
    assert sum(t[1] == 0 for t in ds.gallery) == 3248
    assert len({t[1] for t in ds.gallery}) == 621
    assert sum(len(t[0]) for t in ds.train) == 509914
    test_table = sio.loadmat(src / "info" / "tracks_test_info.mat")["track_test_info"]
    kept = test_table[:, 2] != -1
    assert sum(len(t[0]) for t in ds.query + ds.gallery) == \
        int((test_table[kept, 1] - test_table[kept, 0] + 1).sum())
    unknown = (-1,) * 21
    assert all(t[3] != unknown for t in ds.train + ds.query)
    assert all((t[3] == unknown) == (t[1] == 0) for t in ds.gallery)
    # full coverage: every CSV row is used by exactly one train/query/non-distractor tracklet
    firsts = [os.path.basename(t[0][0]) for t in ds.train + ds.query + ds.gallery
              if t[3] != unknown]
    keys = {(int(n[:4]), int(n[5]), int(n[7:11])) for n in firsts}
    assert {t.key for t in ds.train + ds.query + ds.gallery if t[3] != unknown} == keys
    csv_keys = df[["person_id", "camera_id", "tracklets_id"]].to_numpy().tolist()
    assert keys == set(map(tuple, csv_keys))
    assert len(keys) == 16360
    first = ds.train[0]
    assert first[0][0] == str(root / "bbox_train" / "0001" / "0001C1T0001F001.jpg")
    assert (first[1], first[2]) == (0, 0)


def test_real_attribute_csvs_parse_to_the_schemas(shared_data):
    mars = load_attribute_table(str(shared_data / "mars" / "mars_attributes.csv"), MARS_SCHEMA)
    duke = load_attribute_table(str(shared_data / "duke" / "duke_attributes.csv"), DUKE_SCHEMA)
    assert len(mars) == 16360 and len(duke) == 4832
    assert mars[(1, 2, 58)] == (0, 3, 0, 0, 0, 0, 0, 0, 0, 8, 0, 1, 1, 1, 0, 0, 0, 0, 1, 1, 0)
    assert all(len(v) == 21 for v in mars.values()) and all(len(v) == 19 for v in duke.values())
    assert DUKE_SCHEMA.attr_lens == [[5, 6, 2, 2, 2, 2, 2, 2, 2], [2, 2, 2, 2, 2, 2, 2, 2, 8, 9]]
    assert [sum(g) for g in DUKE_SCHEMA.attr_lens] == [25, 33]
    assert [sum(g) for g in MARS_SCHEMA.attr_lens] == [25, 41]
    header = pd.read_csv(shared_data / "duke" / "duke_attributes.csv", nrows=0).columns
    assert list(header[3:]) == DUKE_SCHEMA.names
    header = pd.read_csv(shared_data / "mars" / "mars_attributes.csv", nrows=0).columns
    assert list(header[3:]) == MARS_SCHEMA.names
    # the largest class index of every attribute is within its class count
    high = np.max(np.array(list(duke.values())), axis=0)
    assert (high < np.array(DUKE_SCHEMA.flat_lens)).all()


def _write_csv(path: Path, header, rows) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_attribute_csv_validation_messages(tmp_path):
    header = ["person_id", "camera_id", "tracklets_id", *MARS_SCHEMA.names]
    good = [1, 2, 3, *([0] * 21)]
    p = _write_csv(tmp_path / "a.csv", [h for h in header if h not in ("hat", "age")], [])
    with pytest.raises(UserError, match=r"a.csv' lacks the column\(s\) \['age', 'hat'\]"):
        load_attribute_table(str(p), MARS_SCHEMA)
    p = _write_csv(tmp_path / "b.csv", header, [good, [4, 1, 1, *([1] * 21)], good])
    with pytest.raises(UserError, match=r"b.csv' has 2 rows sharing .* \(1, 2, 3\) on lines "
                                        r"\[2, 4\]"):
        load_attribute_table(str(p), MARS_SCHEMA)
    bad = list(good)
    bad[3 + 11] = 4                               # age has 4 classes: 0..3
    p = _write_csv(tmp_path / "c.csv", header, [good[:2] + [9] + good[3:], bad])
    with pytest.raises(UserError, match=r"c.csv', line 3, column 'age': value 4 is outside "
                                        r"the 4 classes \[0, 3\]"):
        load_attribute_table(str(p), MARS_SCHEMA)
    p = _write_csv(tmp_path / "d.csv", header, [good[:5] + ["x"] + good[6:]])
    with pytest.raises(UserError, match=r"d.csv', line 2, column 'occlusion': 'x' is not an"):
        load_attribute_table(str(p), MARS_SCHEMA)
    # one check lists every problem; the loader raises the first
    rows = [good, [1, 2, 9, "y", *good[4:]], [4, 1, 1, *bad[3:]], good]
    table, problems = check_attribute_csv(str(_write_csv(tmp_path / "e.csv", header, rows)),
                                          MARS_SCHEMA)
    assert [(q.lines, q.column, q.value) for q in problems] == [
        ((3,), "motion", "y"), ((4,), "age", "4"), ((2, 5), "", "")]
    assert "re-download" in problems[0].fix and "belongs to this dataset" in problems[1].fix
    assert table == {(1, 2, 3): (0,) * 21, (1, 2, 9): (-1,) + (0,) * 20,
                     (4, 1, 1): (0,) * 11 + (-1,) + (0,) * 9}
    p = tmp_path / "e.csv"
    with pytest.raises(UserError) as e:
        load_attribute_table(str(p), MARS_SCHEMA)
    assert str(e.value) == f"Attribute file {problems[0].message}. Fix: {problems[0].fix}."
    assert check_attribute_csv(str(tmp_path / "absent.csv"), MARS_SCHEMA)[0] is None
    # Duke: the real spelling and the corrected one are both accepted
    dh = ["person_id", "camera_id", "tracklets_id", *DUKE_SCHEMA.names]
    for spelling in ("muti-person", "multi-person"):
        hdr = [spelling if h == "muti-person" else h for h in dh]
        p = _write_csv(tmp_path / f"{spelling}.csv", hdr, [[1, 1, 1, *([1] * 19)]])
        assert load_attribute_table(str(p), DUKE_SCHEMA) == {(1, 1, 1): (1,) * 19}


# ----------------------------------------------------------------------------- Duke


def test_duke_tiny_tracklets_and_query_inside_gallery(tmp_path, caplog):
    root = write_tiny_duke(tmp_path / "duke")
    with caplog.at_level(logging.INFO, logger="reid.data"):
        ds = DukeVideo(str(root))

    def expected(split, relabel=None):
        out = []
        for pid, tid, cam, n in TINY_DUKE[split]:
            folder = root / split / f"{pid:04d}" / f"{tid:04d}"
            paths = tuple(str(folder / f"{pid:04d}_C{cam}_F{k:04d}_X{k:05d}.jpg")
                          for k in range(1, n + 1))
            label = relabel[pid] if relabel else pid
            out.append(Tracklet(paths, label, cam - 1, tuple(duke_attrs(pid, cam, tid)),
                                (pid, cam, tid)))
        return out

    assert ds.train == expected("train", {4: 0, 9: 1})
    assert ds.query == expected("query")
    assert ds.gallery == expected("gallery")
    q_keys = {(t[1], t[2]) for t in ds.query}
    assert q_keys <= {(t[1], t[2]) for t in ds.gallery}
    assert ds.num_train_pids == 2
    assert ds.attr_names[4] == "muti-person" and len(ds.attr_names) == 19
    assert "DukeMTMC-VideoReID statistics" in caplog.text


def test_duke_errors(tmp_path):
    root = write_tiny_duke(tmp_path / "duke")
    shutil.rmtree(root / "query")
    (root / "duke_attributes.csv").unlink()
    with pytest.raises(UserError) as e:
        DukeVideo(str(root))
    assert "2 required path(s)" in str(e.value) and str(root / "query") in str(e.value)
    root = write_tiny_duke(tmp_path / "duke2")
    src = root / "train" / "0009" / "0003" / "0009_C1_F0002_X00002.jpg"
    src.rename(src.with_name("0009_C2_F0002_X00002.jpg"))           # second camera in a tracklet
    with pytest.raises(UserError, match=r"0009/0003' .* one camera"):
        DukeVideo(str(root), verbose=False)
    root = write_tiny_duke(tmp_path / "duke3")
    (root / "train" / "0004" / "0007").mkdir()
    with pytest.raises(UserError, match=r"0004/0007' holds no image"):
        DukeVideo(str(root), verbose=False)


# ----------------------------------------------------------------------------- iLIDS-VID, PRID


def test_ilidsvid_and_prid_layouts(tmp_path):
    root = tmp_path / "ilids"
    persons = ["person001", "person002", "person005", "person007"]
    for cam in ("cam1", "cam2"):
        for i, p in enumerate(persons):
            for k in range(1, 3 + i):
                write_frame(root / "i-LIDS-VID" / "sequences" / cam / p / f"{cam}_{p}_{k:05d}.png",
                            k)
    (root / "train-test people splits").mkdir()
    sio.savemat(root / "train-test people splits" / "train_test_splits_ilidsvid.mat",
                {"ls_set": np.array([[4, 2, 1, 3], [1, 2, 3, 4]])})
    ds = ILIDSVID(str(root), verbose=False)
    assert [(t[1], t[2], len(t[0])) for t in ds.train] == [(0, 0, 3), (0, 1, 3), (1, 0, 5),
                                                            (1, 1, 5)]
    assert [(t[1], t[2]) for t in ds.query] == [(1, 0), (5, 0)]
    assert [(t[1], t[2]) for t in ds.gallery] == [(1, 1), (5, 1)]
    assert ds.attr_lens is None and ds.train[0][3] == ()
    assert [t.key for t in ds.query] == [(1, 1, 1), (5, 1, 1)]
    assert [t.key for t in ds.train[:2]] == [(2, 1, 1), (2, 2, 1)]
    assert ds.train[0][0][0].endswith(os.path.join("cam1", "person002", "cam1_person002_00001.png"))

    root = tmp_path / "prid"
    base = root / "prid_2011" / "multi_shot"
    for p in range(1, 6):
        write_frame(base / "cam_a" / f"person_{p:04d}" / "0001.png", 1)
    for p in (1, 2, 3, 4, 9):
        write_frame(base / "cam_b" / f"person_{p:04d}" / "0001.png", 1)
    ds = PRID2011(str(root), verbose=False)
    assert [(t[1], t[2]) for t in ds.train] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert [(t[1], t[2]) for t in ds.query] == [(3, 0), (4, 0)]
    assert [(t[1], t[2]) for t in ds.gallery] == [(3, 1), (4, 1)]
    with pytest.raises(UserError, match="2 required path"):
        PRID2011(str(tmp_path / "nothing"), verbose=False)


def test_dataset_classes_hold_their_facts():
    facts = {name: (cls.attribute_schema, cls.attribute_file, cls.standard_train_pids)
             for name, cls in DATASETS.items()}
    assert facts == {"mars": (MARS_SCHEMA, "mars_attributes.csv", 625),
                     "duke": (DUKE_SCHEMA, "duke_attributes.csv", 702),
                     "ilidsvid": (None, None, 150), "prid": (None, None, 100),
                     "folder": (None, "attributes.csv", None)}   # schema: each attributes.yml
    assert Mars.published_statistics == {"train": (625, 8298, 509914), "query": (626, 1980, None),
                                         "gallery": (621, 9330, None)}
    assert DukeVideo.published_statistics["gallery"] == (1110, 2636, None)
    assert ILIDSVID.published_statistics is None and PRID2011.published_statistics is None


# ----------------------------------------------------------------------------- hints per class
def _append_first_row(csv_path: Path) -> None:
    with open(csv_path, newline="") as f:
        rows = list(csv.reader(f))
    with open(csv_path, "w", newline="") as f:
        csv.writer(f).writerows([*rows, rows[1]])


@pytest.mark.parametrize("cls,writer", [(Mars, write_tiny_mars), (DukeVideo, write_tiny_duke)])
def test_attribute_problems_of_mars_and_duke_name_their_download(tmp_path, cls, writer):
    root = writer(tmp_path / "ds")
    _append_first_row(root / cls.attribute_file)
    with pytest.raises(UserError) as e:
        cls(str(root), verbose=False)
    msg = str(e.value)
    assert "rows sharing a (person_id, camera_id, tracklets_id) key" in msg
    assert msg.endswith(f"Fix: re-download the attribute annotations ({cls.attribute_file}, "
                        "from the AITL code release; README, Data preparation).")
    assert cls.attribute_fixes != FolderDataset.attribute_fixes


def test_a_header_less_attribute_csv_names_the_expected_header(tmp_path):
    header = ["person_id", "camera_id", "tracklets_id", *MARS_SCHEMA.names]
    p = _write_csv(tmp_path / "a.csv", [1, 2, 3, *([0] * 21)], [[1, 2, 4, *([1] * 21)]])
    with pytest.raises(UserError) as e:
        load_attribute_table(str(p), MARS_SCHEMA)
    assert str(e.value) == (
        f"Attribute file '{p}' has no header row: its line 1 ('1,2,3,{','.join('0' * 21)}') "
        "holds values, not column names; expected the header "
        f"'{','.join(header)}'. Fix: insert that header as line 1 of the file (the columns in "
        "this order).")
    table, problems = check_attribute_csv(str(p), MARS_SCHEMA)
    assert table is None and [(q.lines, q.column) for q in problems] == [((1,), "")]
    # a header of other names is still a header: its missing columns are listed
    p = _write_csv(tmp_path / "b.csv", ["id", "cam", "track", *(f"a{i}" for i in range(21))],
                   [[1, 2, 3, *([0] * 21)]])
    problems = check_attribute_csv(str(p), MARS_SCHEMA)[1]
    assert "lacks the column(s) ['person_id'," in problems[0].message


def test_frame_fixes_come_from_the_dataset_class_that_holds_the_frame(tmp_path):
    mars = Mars(str(write_tiny_mars(tmp_path / "mars")), verbose=False)
    duke = DukeVideo(str(write_tiny_duke(tmp_path / "duke")), verbose=False)
    for ds, cls in ((mars, Mars), (duke, DukeVideo)):
        frames = [p for t in ds.train + ds.query + ds.gallery for p in t.img_paths]
        assert all([c for c in DATASETS.values() if c.holds_frame(p)] == [cls]
                   for p in frames)
    folder_frame = str(tmp_path / "mine" / "gallery" / "-1" / "2_0003" / "001.png")
    others = {str(tmp_path / "ilids" / "i-LIDS-VID" / "sequences" / "cam1" / "person001"
                  / "a.png"): ILIDSVID,
              str(tmp_path / "prid" / "prid_2011" / "multi_shot" / "cam_b" / "person_0001"
                  / "0001.png"): PRID2011,
              folder_frame: FolderDataset}
    assert {p: dataset_class_of_frame(p) for p in others} == others
    assert dataset_class_of_frame(str(tmp_path / "x" / "frame.png")) is None
    assert frame_fix(str(tmp_path / "x" / "frame.png")) == VideoReIDDataset.frame_fix("")
    # training's message: the archive of MARS (with its split files), Duke's archive (no
    # split files: its folders are the split), the folder dataset's own frames
    train, test = mars.train[0].img_paths[0], mars.gallery[0].img_paths[0]
    duke_frame = duke.train[0].img_paths[0]
    for path in (train, test, duke_frame, folder_frame):
        if os.path.exists(path):
            os.remove(path)
    fixes = {}
    for path in (train, test, duke_frame, folder_frame):
        with pytest.raises(UserError) as e:
            read_image(path, retries=1)
        fixes[path] = str(e.value).partition("Fix: ")[2]
    assert fixes == {
        train: "restore the file(s) from bbox_train.zip (re-extract it), or remove the tracklet "
               "from the split files.",
        test: "restore the file(s) from bbox_test.zip (re-extract it), or remove the tracklet "
              "from the split files.",
        duke_frame: "restore the file(s) from DukeMTMC-VideoReID.zip (re-extract it).",
        folder_frame: "replace the frame by a readable .jpg/.jpeg/.png image, or delete it (or "
                      "its tracklet folder).",
    }


# ----------------------------------------------------------------------------- attribute matcher
def _tracklet(pid: int, cam: int, tid: int, folder: str = "f") -> Tracklet:
    return Tracklet((f"/d/{folder}/{pid}_{cam}_{tid}/1.jpg",), pid, cam - 1, (), (pid, cam, tid))


def test_released_rules_distractors_gallery_and_unmatched_rows():
    table = {(1, 1, 1): (0, 1), (2, 1, 1): (1, 0), (0, 2, 1): (1, 1), (9, 9, 9): (0, 0),
             (-1, 1, 1): (0, 0)}
    subsets = {"train": [_tracklet(1, 1, 1)], "query": [_tracklet(2, 1, 1)],
               "gallery": [_tracklet(0, 2, 1), _tracklet(0, 3, 1), _tracklet(5, 1, 1)]}
    found = AttributeMatcher("a.csv", table, 2).match(subsets)
    # a distractor (pid 0) has unknown attributes even with a row; a gallery row may be missing
    assert found.attributes == {"train": [(0, 1)], "query": [(1, 0)],
                                "gallery": [(-1, -1), (-1, -1), (-1, -1)]}
    assert found.error() is None and found.problems() == []
    assert found.distractors == {"train": 0, "query": 0, "gallery": 2}
    assert found.unmatched == [(9, 9, 9)]                  # the junk row (pid -1) is no match
    assert found.notes() == [
        "tracklets with an attribute row: train 1/1, query 1/1, gallery 0/1.",
        "2 gallery distractor tracklet(s) (pid 0) need no attribute row.",
        "1 gallery tracklet(s) (not distractors) have no row in 'a.csv'; training counts their "
        "attributes as unknown.",
        "1 row(s) of 'a.csv' match no tracklet of the split."]
    # train and query need their rows: the first subset that lacks some is named
    subsets["query"].append(_tracklet(4, 2, 3))
    found = AttributeMatcher("a.csv", table, 2).match(subsets)
    assert str(found.error()).startswith("1 query tracklet(s) have no row in the attribute file "
                                         "'a.csv' (looked up by person_id, camera_id, "
                                         "tracklets_id):\n  - pid 4, camera 2, tracklet 3")
    assert found.problems() == [("query tracklet pid 4, camera 2, tracklet 3 (first image "
                                 "/d/f/4_2_3/1.jpg) has no row in 'a.csv'", "/d/f/4_2_3")]
    with pytest.raises(UserError, match="1 query tracklet"):
        AttributeMatcher("a.csv", table, 2).assign(subsets)


def test_exact_rules_need_a_row_per_tracklet_and_a_tracklet_per_row():
    def folder_key(t):
        return t.key[0], t.camid, t.img_paths[0].split("/")[3]

    table = {(0, 0, "0_1_1"): (1,), (3, 0, "3_1_1"): (0,), (7, 0, "x"): (0,), (-2, 0, "j"): (0,)}
    rules = AttributeRules(row_key=folder_key, exact=True)
    subsets = {"train": [_tracklet(3, 1, 1)], "query": [_tracklet(0, 1, 1)],
               "gallery": [_tracklet(5, 2, 1)]}
    found = AttributeMatcher("b.csv", table, 1, rules, "edit it").match(subsets)
    assert found.attributes == {"train": [(0,)], "query": [(1,)], "gallery": [(-1,)]}  # pid 0
    assert found.unmatched == [(7, 0, "x")] and found.distractors["query"] == 0
    assert str(found.error()) == (
        "'b.csv' does not match the tracklets: 1 tracklet(s) have no row and 1 row(s) name no "
        "tracklet:\n  - /d/f/5_2_1: no row (pid 5, camid 1, tracklet 5_2_1)\n  - row pid 7, "
        "camid 0, tracklet x: no such tracklet folder\nFix: edit it.")
    assert found.problems() == [
        ("tracklet /d/f/5_2_1 has no row (pid 5, camid 1, tracklet 5_2_1) in 'b.csv'", ""),
        ("'b.csv' has a row for pid 7, camid 0, tracklet x, but no such tracklet folder exists",
         "b.csv")]
    assert found.notes() == ["tracklets with an attribute row: 2/3."]


def test_make_tracklets_relabels_train_and_matches_every_subset():
    table = {(8, 1, 1): (1,), (3, 2, 1): (0,), (8, 2, 5): (1,)}
    subsets = {"train": ([("a",), ("b",)], [(8, 1, 1), (3, 2, 1)]),
               "query": ([("c",)], [(8, 2, 5)]), "gallery": ([], [])}
    train, query, gallery = make_tracklets(subsets, AttributeMatcher("c.csv", table, 1))
    assert train == [Tracklet(("a",), 1, 0, (1,), (8, 1, 1)),
                     Tracklet(("b",), 0, 1, (0,), (3, 2, 1))]
    assert query == [Tracklet(("c",), 8, 1, (1,), (8, 2, 5))] and gallery == []
    assert make_tracklets(subsets)[1] == [Tracklet(("c",), 8, 1, (), (8, 2, 5))]


# ----------------------------------------------------------------------------- one constructor
def test_every_dataset_class_has_one_constructor_and_its_own_hints():
    for cls in DATASETS.values():
        params = inspect.signature(cls).parameters
        assert list(params) == ["root", "attributes", "verbose"], cls
    # the fix of missing frames names the class's archive (the folder dataset: its folders)
    assert Mars.frames_fix() == "restore them (re-extract bbox_train.zip and bbox_test.zip)"
    assert DukeVideo.frames_fix() == "restore them (re-extract DukeMTMC-VideoReID.zip)"
    assert ILIDSVID.frame_fix("x") == "restore the file(s) from i-LIDS-VID.tar (re-extract it)"
    assert PRID2011.frame_fix("x") == "restore the file(s) from prid_2011.zip (re-extract it)"
    assert "archive" not in FolderDataset.frames_fix()


def test_missing_frames_of_a_folder_dataset_name_its_own_fix(tmp_path):
    root = tmp_path / "mine"
    for split, pid in (("train", "1"), ("train", "2"), ("query", "1"), ("gallery", "1")):
        write_frame(root / split / pid / "0_a" / "001.jpg", 1)
    ds = FolderDataset(str(root), attributes=False, verbose=False)
    os.remove(ds.gallery[0].img_paths[0])
    with pytest.raises(UserError) as e:
        check_image_files(ds)
    assert "Fix: restore them, or delete them (or their tracklet folders); `python -m " \
           "tools.verify" in str(e.value) and "archive" not in str(e.value)


def test_attributes_are_on_with_the_switch_and_a_dataset_that_has_them(tmp_path):
    on, off = load_cfg(None, []), load_cfg(None, ["ATTR_RECOG_ON", "False"])
    assert attributes_on(on, [[2], [3]]) and not attributes_on(on, None)
    assert not attributes_on(off, [[2], [3]])
    ds = Mars(str(write_tiny_mars(tmp_path / "mars", images=False)), verbose=False)
    assert (attribute_mode(on, ds), attribute_mode(off, ds)) == ("bce", "none")
    assert ILIDSVID.__init__ is Mars.__init__ is VideoReIDDataset.__init__
