"""The folder dataset of your own tracklets: layout, attributes, every bad input's message,
``tools.verify`` on it, and the synthetic writer's ``--format folder``."""

import csv
import logging
import shutil
from pathlib import Path

import pytest

import main_baseline
from config import load_cfg
from data import build_dataset
from data.attributes import MARS_SCHEMA, read_attribute_schema, write_attribute_schema
from data.datasets import DATASETS, FolderDataset, Tracklet
from data.datasets.folder import split_tracklets
from data.transforms import read_image
from data.verification import verify_dataset
from tests.helpers import run_dirs, tiny_opts, write_frame
from tools import synthetic as synthetic_tool
from tools import verify
from tools.synthetic import MARKER_NAME, write_synthetic_dataset
from utils.errors import UserError

SCHEMA_YML = ("id_irrelevant:\n  pose: 3\n  occlusion: 2\n"
              "id_relevant:\n  gender: 2\n  top color: 4\n")
# (split, pid folder, tracklet folder, frames) of the tiny hand-made dataset
TINY = [("train", "12", "1_a", 3), ("train", "12", "2_b", 2), ("train", "7", "1_0001", 2),
        ("train", "-1", "3_junk", 2), ("query", "5", "1_q", 2), ("query", "9", "2_q", 3),
        ("gallery", "5", "2_g1", 2), ("gallery", "9", "1_g", 2), ("gallery", "0030", "4_d", 2),
        ("gallery", "-2", "1_j", 1)]


def attrs_of(pid: int, camid: int, name: str) -> list[int]:
    """A deterministic in-range row of the tiny schema (3, 2, 2, 4 classes)."""
    return [(pid + camid + len(name) + i) % n for i, n in enumerate((3, 2, 2, 4))]


def write_tiny_folder(root: Path, attributes: bool = True) -> Path:
    """The TINY tracklets (solid frames encoding their number), and the attribute files."""
    for split, pid, name, n in TINY:
        for k in range(1, n + 1):
            write_frame(root / split / pid / name / f"{k:03d}.{'png' if k % 2 else 'jpg'}", k)
    (root / "train" / "12" / "1_a" / "notes.txt").write_text("not a frame")
    (root / "train" / ".hidden").mkdir()
    if attributes:
        (root / "attributes.yml").write_text(SCHEMA_YML)
        with open(root / "attributes.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["pid", "camid", "tracklet", "pose", "occlusion", "gender", "top color"])
            for _, pid, name, _ in TINY:
                if int(pid) >= 0:
                    camid = int(name.split("_")[0])
                    w.writerow([int(pid), camid, name, *attrs_of(int(pid), camid, name)])
    return root


@pytest.fixture
def tiny(tmp_path) -> Path:
    return write_tiny_folder(tmp_path / "mine")


# ------------------------------------------------------------------------------ parsing
def test_tiny_folder_tracklets_relabelling_junk_and_attributes(tiny, caplog):
    with caplog.at_level(logging.INFO, logger="reid.data"):
        ds = FolderDataset(str(tiny))
    assert "dropped 2 junk tracklet(s)" in caplog.text and "folder statistics" in caplog.text

    def paths(split, pid, name, n):
        folder = tiny / split / pid / name
        return tuple(str(folder / f"{k:03d}.{'png' if k % 2 else 'jpg'}") for k in range(1, n + 1))

    # pid folders in numeric order, tracklet folders by name; train pids 7, 12 -> 0, 1
    assert ds.train == [
        Tracklet(paths("train", "7", "1_0001", 2), 0, 1, tuple(attrs_of(7, 1, "1_0001")),
                 (7, 2, 1)),
        Tracklet(paths("train", "12", "1_a", 3), 1, 1, tuple(attrs_of(12, 1, "1_a")), (12, 2, 1)),
        Tracklet(paths("train", "12", "2_b", 2), 1, 2, tuple(attrs_of(12, 2, "2_b")), (12, 3, 2))]
    assert [(t.pid, t.camid) for t in ds.query] == [(5, 1), (9, 2)]
    assert [(t.pid, t.camid) for t in ds.gallery] == [(5, 2), (9, 1), (30, 4)]   # 30: distractor
    assert ds.num_train_pids == 2
    assert ds.attr_lens == [[3, 2], [2, 4]] and ds.attr_names == ["pose", "occlusion", "gender",
                                                                  "top color"]
    assert ds.statistics()["gallery"] == (3, 3, 6)


def test_without_attributes_needs_no_attribute_files(tmp_path):
    root = write_tiny_folder(tmp_path / "mine", attributes=False)
    ds = FolderDataset(str(root), attributes=False, verbose=False)
    assert ds.attr_lens is None and all(t.attributes == () for t in ds.train + ds.gallery)
    cfg = load_cfg(None, ["DATASETS.NAME", "folder", "DATASETS.ROOT_DIR", str(root),
                          "ATTR_RECOG_ON", "False"])
    assert build_dataset(cfg).attr_lens is None


def test_attr_recog_on_without_the_files_names_both_and_the_keys(tmp_path):
    root = write_tiny_folder(tmp_path / "mine", attributes=False)
    cfg = load_cfg(None, ["DATASETS.NAME", "folder", "DATASETS.ROOT_DIR", str(root)])
    with pytest.raises(UserError) as e:
        build_dataset(cfg)
    msg = str(e.value)
    assert str(root / "attributes.yml") in msg and str(root / "attributes.csv") in msg
    assert "ATTR_RECOG_ON False MODEL.FUSION_METHOD TA" in msg
    assert "id_irrelevant and id_relevant" in msg
    (root / "attributes.yml").write_text(SCHEMA_YML)
    with pytest.raises(UserError, match=r"lacks '.*attributes\.csv'\. Fix"):
        build_dataset(cfg)


def test_split_folder_and_registry(tiny):
    tracklets, junk = split_tracklets(str(tiny / "gallery"))
    assert junk == 1 and [t.pid for t in tracklets] == [5, 9, 30]
    assert DATASETS["folder"] is FolderDataset
    assert (FolderDataset.attribute_schema, FolderDataset.attribute_file) == (None,
                                                                              "attributes.csv")


def test_schema_file_round_trip(tmp_path):
    path = str(tmp_path / "attributes.yml")
    write_attribute_schema(path, MARS_SCHEMA)
    schema = read_attribute_schema(path)
    assert (schema.groups, schema.lens) == (MARS_SCHEMA.groups, MARS_SCHEMA.lens)


# ------------------------------------------------------------------------------ bad inputs
def parse_error(root: Path) -> str:
    with pytest.raises(UserError) as e:
        FolderDataset(str(root), verbose=False)
    return str(e.value)


@pytest.mark.parametrize("frame,expected", [
    ("train/seven/1_a/001.jpg", "Pid folder '{root}/train/seven': the name must be an integer"),
    ("query/5/cam1_q/001.jpg", "Tracklet folder '{root}/query/5/cam1_q': the name must be "
                               "<camid>_<tracklet> with an integer camid"),
    ("gallery/9/3/001.jpg", "Tracklet folder '{root}/gallery/9/3': the name must be "
                            "<camid>_<tracklet>"),
])
def test_bad_folder_names(tiny, frame, expected):
    write_frame(tiny / frame, 1)
    msg = parse_error(tiny)
    assert expected.format(root=tiny) in msg and "Fix: rename" in msg


def test_empty_tracklet(tiny):
    (tiny / "query" / "5" / "1_empty").mkdir()
    (tiny / "query" / "5" / "1_empty" / "a.txt").write_text("")
    msg = parse_error(tiny)
    assert f"Tracklet folder '{tiny}/query/5/1_empty' holds no frame" in msg
    assert ".jpg, .jpeg, .png" in msg and "Fix: add its frames or remove the folder" in msg


def test_missing_split_and_empty_split(tiny):
    shutil.rmtree(tiny / "query")
    assert f"{tiny}/query" in parse_error(tiny)
    (tiny / "query").mkdir()
    assert f"'{tiny}/query' holds no tracklet" in parse_error(tiny)


def rewrite_csv(root: Path, edit) -> None:
    with open(root / "attributes.csv", newline="") as f:
        rows = list(csv.reader(f))
    with open(root / "attributes.csv", "w", newline="") as f:
        csv.writer(f).writerows(edit(rows))


def test_row_without_tracklet_and_tracklet_without_row(tiny):
    rewrite_csv(tiny, lambda rows: [r if r[2] != "1_q" else [r[0], r[1], "q", *r[3:]]
                                    for r in rows])
    msg = parse_error(tiny)
    assert "1 tracklet(s) have no row and 1 row(s) name no tracklet" in msg
    assert f"{tiny}/query/5/1_q: no row (pid 5, camid 1, tracklet 1_q)" in msg
    assert "row pid 5, camid 1, tracklet q: no such tracklet folder" in msg
    assert "its folder's name (e.g. 1_0003 in train/0005/1_0003)" in msg


def test_class_index_outside_its_range(tiny):
    rewrite_csv(tiny, lambda rows: [rows[0], [*rows[1][:6], "4"], *rows[2:]])
    msg = parse_error(tiny)
    assert "attributes.csv', line 2, column 'top color': value 4 is outside the 4 classes" in msg
    assert msg.endswith("Fix: write class indices from 0 to the class count of the attribute "
                        "in attributes.yml minus 1, or correct that count in attributes.yml.")


# The hints of a folder dataset name its own files, never the MARS/Duke downloads.
def test_a_duplicated_row_is_fixed_in_attributes_csv(tiny, capsys):
    rewrite_csv(tiny, lambda rows: [*rows, rows[1]])
    msg = parse_error(tiny)
    assert "attributes.csv' has 2 rows sharing a (pid, camid, tracklet) key: (12, 1, '1_a') on " \
           "lines [2, 10]" in msg
    assert msg.endswith("Fix: keep one line per tracklet in attributes.csv: delete or correct "
                        "the repeated lines.")
    assert "re-download" not in msg
    code, out = verify_cli(capsys, tiny)
    assert code == 1 and "fix: keep one line per tracklet in attributes.csv" in out
    assert "re-download" not in out


def test_a_header_less_attributes_csv_is_named(tiny, capsys):
    rewrite_csv(tiny, lambda rows: rows[1:])
    msg = parse_error(tiny)
    header = "pid,camid,tracklet,pose,occlusion,gender,top color"
    assert msg == (f"Attribute file '{tiny / 'attributes.csv'}' has no header row: its line 1 "
                   f"('12,1,1_a,{','.join(map(str, attrs_of(12, 1, '1_a')))}') holds values, "
                   f"not column names; expected the header '{header}'. Fix: insert that header "
                   "as line 1 of the file (the columns in this order).")
    code, out = verify_cli(capsys, tiny)
    assert code == 1 and "has no header row" in out and f"expected the header '{header}'" in out
    assert "lacks the column" not in out and "re-download" not in out


def test_a_csv_lacking_some_columns_names_the_folder_fix(tiny):
    rewrite_csv(tiny, lambda rows: [r[:-1] for r in rows])
    msg = parse_error(tiny)
    assert "attributes.csv' lacks the column(s) ['top color']" in msg and "no header" not in msg
    assert "Fix: write attributes.csv as a header line pid,camid,tracklet followed by the " \
           "attribute names of attributes.yml" in msg


def test_a_corrupt_frame_in_training_names_the_folder_fix(tiny):
    bad = tiny / "train" / "12" / "1_a" / "002.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(UserError) as e:
        read_image(str(bad), retries=1)
    msg = str(e.value)
    assert msg.startswith(f"Cannot read image '{bad}' after 1 attempt(s): ")
    assert msg.endswith("Fix: replace the frame by a readable .jpg/.jpeg/.png image, or delete "
                        "it (or its tracklet folder).")
    assert "split files" not in msg and "archive" not in msg


@pytest.mark.parametrize("text,expected", [
    ("id_relevant: {gender: 2}\n", "must hold the keys ['id_irrelevant', 'id_relevant']; it "
                                   "holds ['id_relevant']"),
    (SCHEMA_YML + "extra: {a: 2}\n", "it holds ['extra', 'id_irrelevant', 'id_relevant']"),
    ("id_irrelevant: {}\nid_relevant: {gender: 2}\n", "id_irrelevant must be a non-empty mapping"),
    ("id_irrelevant: [pose]\nid_relevant: {gender: 2}\n", "id_irrelevant must be a non-empty"),
    ("id_irrelevant: {pose: 0}\nid_relevant: {gender: 2}\n", "attribute 'pose' (id_irrelevant) "
                                                             "has 0 classes"),
    ("id_irrelevant: {pose: two}\nid_relevant: {gender: 2}\n", "has 'two' classes"),
    ("id_irrelevant: {pose: 2.5}\nid_relevant: {gender: 2}\n", "has 2.5 classes"),
    ("id_irrelevant: {yes: 2}\nid_relevant: {gender: 2}\n", "name True is not a text"),
    ("id_irrelevant: {pose: 2}\nid_relevant: {pose: 2}\n", "['pose'] repeat or are key columns"),
    ("id_irrelevant: {pid: 2}\nid_relevant: {gender: 2}\n", "['pid'] repeat or are key columns"),
    ("id_irrelevant: {pose: 2\n", "Cannot read the attribute schema"),
    ("- 1\n", "it holds list"),
])
def test_malformed_attributes_yml(tiny, text, expected):
    (tiny / "attributes.yml").write_text(text)
    msg = parse_error(tiny)
    assert str(tiny / "attributes.yml") in msg and expected in msg, msg


# ------------------------------------------------------------------------------ tools.verify
def verify_cli(capsys, root: Path, *extra: str) -> tuple[int, str]:
    code = verify.main(["--config_file", "", "DATASETS.NAME", "folder", "DATASETS.ROOT_DIR",
                        str(root), "--no-progress", "--workers", "1", *extra])
    return code, capsys.readouterr().out


def test_verify_a_clean_folder(capsys, tiny):
    code, out = verify_cli(capsys, tiny)
    assert code == 0, out
    assert "no published statistics to compare for 'folder'" in out
    assert "tracklets with an attribute row: 8/8" in out and "OK: no problem found." in out


def test_verify_names_every_problem_of_a_folder(capsys, tiny):
    bad = tiny / "gallery" / "9" / "1_g" / "002.jpg"
    bad.write_bytes(b"not a jpeg")
    rewrite_csv(tiny, lambda rows: [*rows[:1], [*rows[1][:6], "7"], *[r for r in rows[2:]
                                                                      if r[2] != "2_g1"],
                                    ["44", "1", "1_x", "0", "0", "0", "0"]])
    code, out = verify_cli(capsys, tiny)
    assert code == 1
    assert "column 'top color': value 7 is outside the 4 classes" in out
    assert f"tracklet {tiny}/gallery/5/2_g1 has no row (pid 5, camid 2, tracklet 2_g1)" in out
    assert "has a row for pid 44, camid 1, tracklet 1_x, but no such tracklet folder" in out
    assert f"cannot be decoded (UnidentifiedImageError: cannot identify image file '{bad}')" in out
    assert "replace the frame by a readable .jpg/.jpeg/.png image, or delete it" in out
    assert "FAILED: 4 problem(s) (attributes 3, images 1)" in out


def test_verify_of_a_missing_folder_points_to_your_own_data(capsys, tmp_path):
    code, out = verify_cli(capsys, tmp_path / "absent")
    assert code == 1 and "the dataset folder does not exist" in out
    assert "fix: set DATASETS.ROOT_DIR to the folder that holds the dataset (README, Your own " \
           "data)" in out


def test_verify_reports_a_folder_name_and_the_attribute_files(capsys, tiny):
    (tiny / "attributes.yml").unlink()
    code, out = verify_cli(capsys, tiny)
    assert code == 1 and "lacks" in out and "attributes.yml" in out
    code, out = verify_cli(capsys, tiny, "ATTR_RECOG_ON", "False")
    assert code == 0 and "ATTR_RECOG_ON is False: the attribute file is not checked" in out
    write_frame(tiny / "train" / "x7" / "1_a" / "001.jpg", 1)
    code, out = verify_cli(capsys, tiny, "ATTR_RECOG_ON", "False")
    assert code == 1 and f"Pid folder '{tiny}/train/x7'" in out and "fix: rename" in out


def test_verify_reads_the_frames_of_a_folder_dataset(tiny):
    report = verify_dataset(load_cfg(None, ["DATASETS.NAME", "folder", "DATASETS.ROOT_DIR",
                                            str(tiny)]), workers=1)
    assert report.ok and report.images == 18 and report.statistics["train"] == (2, 3, 7)


# ------------------------------------------------------------------------------ synthetic
@pytest.mark.parametrize("attributes", [True, False])
def test_synthetic_folder_format_parses(tmp_path, capsys, attributes):
    out = tmp_path / "mine"
    args = ["--format", "folder", "--out", str(out), "--ids", "8", "--tracklets", "3",
            "--frames", "3", "--size", "32", "16"] + ([] if attributes else ["--no-attributes"])
    assert synthetic_tool.main(args) == 0
    printed = capsys.readouterr().out
    without = "" if attributes else " without attributes"
    assert printed == f"wrote a synthetic folder dataset{without} to {out}\n"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["train", "query", "gallery", MARKER_NAME]
        + (["attributes.csv", "attributes.yml"] if attributes else []))
    assert (out / "gallery" / "-1").is_dir() and (out / "gallery" / "0000").is_dir()
    ds = FolderDataset(str(out), attributes=attributes, verbose=False)
    assert ds.num_train_pids == 4 and {t.pid for t in ds.query} <= {t.pid for t in ds.gallery}
    assert 0 in {t.pid for t in ds.gallery} and 0 not in {t.pid for t in ds.query}
    if attributes:
        assert ds.attr_lens == MARS_SCHEMA.attr_lens and ds.attr_names == MARS_SCHEMA.names
        assert len({t.attributes for t in ds.train if t.key[0] == ds.train[0].key[0]}) >= 1
    report = verify_dataset(load_cfg(None, ["DATASETS.NAME", "folder", "DATASETS.ROOT_DIR",
                                            str(out), "ATTR_RECOG_ON", str(attributes)]),
                            workers=1)
    assert report.ok, report.format()


def test_synthetic_if_missing_writes_a_folder_dataset(tmp_path):
    root = tmp_path / "new"
    cfg = load_cfg(None, ["DATASETS.NAME", "folder", "DATASETS.ROOT_DIR", str(root),
                          "DATASETS.SYNTHETIC.IF_MISSING", "True", "DATASETS.SYNTHETIC.IDS", "4",
                          "DATASETS.SYNTHETIC.TRACKLETS", "2", "DATASETS.SYNTHETIC.FRAMES", "2",
                          "DATASETS.SYNTHETIC.SIZE", "[16, 8]"])
    synthetic_tool.ensure_dataset(cfg)   # what the commands run before reading the dataset
    assert build_dataset(cfg).attr_lens == MARS_SCHEMA.attr_lens


def test_training_without_attribute_files_fails_with_the_message(tmp_path, capsys):
    root = write_synthetic_dataset(tmp_path / "mine", "folder", ids=4, tracklets=2, frames=2,
                                   size=(32, 16), attributes=False)
    out = tmp_path / "out"
    code = main_baseline.main(["--config_file", "", *tiny_opts(root, out, 1),
                               "DATASETS.NAME", "folder"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ATTR_RECOG_ON True trains the attribute streams")
    assert "ATTR_RECOG_ON False MODEL.FUSION_METHOD TA" in err and "Traceback" not in err
    assert not out.exists() or run_dirs(out) == []
