"""Fault injection through the real commands: each bad input gives an early, clear error (exit 2,
``error: <what, where, fix>`` on stderr, no traceback) and leaves earlier results untouched;
``python -m tools.verify`` names every problem of a dataset folder.

Faults are injected into copies of the shared ``tiny_mars`` folder, never into it.
"""

import hashlib
import shutil
import threading
from pathlib import Path

import pandas as pd
import pytest
import scipy.io as sio
import torch

import main_baseline
from config import load_cfg
from data.verification import verify_dataset
from engine import defaults
from tests.helpers import run_dirs, tiny_opts
from tools import verify
from tools.synthetic import MARKER_NAME, write_synthetic_dataset
from utils.checkpoint import load_file
from utils.errors import UserError, user_message


# ------------------------------------------------------------------------------------ helpers
def _checkpoints(out: Path) -> dict[str, str]:
    """sha256 of every checkpoint file under an OUTPUT_DIR."""
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.rglob("*.pth"))}


@pytest.fixture(scope="module")
def good_run(tiny_mars, tmp_path_factory):
    """A finished 1-epoch run on tiny_mars: its OUTPUT_DIR and checkpoint hashes."""
    out = tmp_path_factory.mktemp("good") / "out"
    assert main_baseline.main(["--config_file", "", *tiny_opts(tiny_mars, out, 1)]) == 0
    ckpts = _checkpoints(out)
    assert any(p.endswith("checkpoint_ep1.pth") for p in ckpts)
    return out, ckpts


@pytest.fixture
def mars_copy(tiny_mars, tmp_path) -> Path:
    """A private copy of tiny_mars to break."""
    return Path(shutil.copytree(tiny_mars, tmp_path / "mars"))


@pytest.fixture(scope="module")
def tiny_duke(tmp_path_factory) -> Path:
    """A tiny synthetic DukeMTMC-VideoReID folder (6 train ids)."""
    root = tmp_path_factory.mktemp("duke") / "duke"
    return write_synthetic_dataset(root, fmt="duke", ids=12, tracklets=3, frames=4, size=(32, 16),
                                   seed=2)


@pytest.fixture
def duke_copy(tiny_duke, tmp_path) -> Path:
    return Path(shutil.copytree(tiny_duke, tmp_path / "duke"))


def fails(capsys, good_run, root, *extra: str) -> str:
    """Run main_baseline on ``root`` into the good run's OUTPUT_DIR; expect a clean failure.

    Asserts exit 2, a single ``error:`` message on stderr, no traceback anywhere, no new
    checkpoint, the earlier checkpoints byte-identical and no new (empty) run folder. Returns
    the message.
    """
    out, before = good_run
    runs = run_dirs(out)
    code = main_baseline.main(["--config_file", "", *tiny_opts(root, out, 1), *extra])
    captured = capsys.readouterr()
    assert code == 2, captured.err
    assert captured.err.startswith("error: ") and captured.err.count("error: ") == 1
    assert "Traceback" not in captured.err + captured.out
    assert _checkpoints(out) == before                   # nothing written, nothing overwritten
    assert run_dirs(out) == runs                         # a failed run leaves no folder
    return captured.err


def train_names(root: Path) -> list[str]:
    return (root / "info" / "train_name.txt").read_text().split()


def first_train_key(root: Path) -> tuple[int, int, int]:
    """(pid, camera, tracklet) of the first train tracklet, from its first image name."""
    n = train_names(root)[0]
    return int(n[:4]), int(n[5]), int(n[7:11])


def edit_csv(root: Path, edit) -> Path:
    path = root / "mars_attributes.csv"
    df = edit(pd.read_csv(path))
    df.to_csv(path, index=False)
    return path


def csv_row(df: pd.DataFrame, key) -> int:
    hit = (df[["person_id", "camera_id", "tracklets_id"]] == list(key)).all(axis=1)
    return int(hit.to_numpy().argmax())


# ------------------------------------------------------------------------------ images
def test_missing_image_stops_before_training(capsys, good_run, mars_copy):
    folder = mars_copy / "bbox_test" / "0000"
    gone = folder / sorted(p.name for p in folder.iterdir())[1]
    gone.unlink()
    err = fails(capsys, good_run, mars_copy)
    assert "1 of the" in err and "image files of the split are missing" in err
    assert str(gone) in err and "Fix: restore them" in err and "python -m tools.verify" in err


def test_truncated_image_in_a_worker_gives_the_message_alone(capsys, good_run, mars_copy):
    # SEQ_LEN 8 > every tracklet's length: a training clip reads all frames of its tracklet,
    # so the first batch meets a truncated F001 frame.
    for name in train_names(mars_copy):
        if name.endswith("F001.jpg"):
            p = mars_copy / "bbox_train" / name[:4] / name
            p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    err = fails(capsys, good_run, mars_copy, "DATALOADER.NUM_WORKERS", "1",
                "DATASETS.SEQ_LEN", "8", "DATALOADER.READ_RETRIES", "1")
    assert "Caught UserError" not in err and "worker" not in err and "File \"" not in err
    assert err.startswith(f"error: Cannot read image '{mars_copy / 'bbox_train'}")
    assert "F001.jpg' after 1 attempt(s): " in err and "runcated" in err
    assert "Fix: restore the file" in err and err.count("\n") == 1


def test_user_message_unwraps_a_worker_error_only():
    wrapped = UserError("Caught UserError in DataLoader worker process 0.\nOriginal Traceback "
                        "(most recent call last):\n  File \"x.py\", line 1, in f\n    raise\n"
                        "utils.errors.UserError: Bad 'a.jpg'.\nFix: restore it.\n")
    assert user_message(wrapped) == "Bad 'a.jpg'.\nFix: restore it."
    assert user_message(UserError("Plain message.\nUserError: kept")) == \
        "Plain message.\nUserError: kept"


# ------------------------------------------------------------------------ split files
def test_empty_tracklet_folder(capsys, good_run, duke_copy):
    pid_dir = sorted((duke_copy / "train").iterdir())[0]
    tracklet = sorted(pid_dir.iterdir())[0]
    for f in tracklet.iterdir():
        f.unlink()
    err = fails(capsys, good_run, duke_copy, "DATASETS.NAME", "duke")
    assert f"Tracklet folder '{tracklet}' holds no image" in err and "Fix: re-extract" in err


def test_missing_split_file(capsys, good_run, mars_copy):
    (mars_copy / "info" / "query_IDX.mat").unlink()
    err = fails(capsys, good_run, mars_copy)
    assert "MARS: 1 required path(s) are missing" in err
    assert str(mars_copy / "info" / "query_IDX.mat") in err and "Fix: Get the images" in err


def test_wrong_key_inside_a_mat_file(capsys, good_run, mars_copy):
    path = mars_copy / "info" / "tracks_test_info.mat"
    table = sio.loadmat(path)["track_test_info"]
    sio.savemat(path, {"tracks_test": table})
    err = fails(capsys, good_run, mars_copy)
    assert f"'{path}' has no variable 'track_test_info' (it holds ['tracks_test'])" in err
    assert "Fix: re-download the MARS info/ files" in err


# ------------------------------------------------------------------------- attributes
def test_attribute_csv_with_missing_columns(capsys, good_run, mars_copy):
    path = edit_csv(mars_copy, lambda df: df.drop(columns=["age", "hat"]))
    err = fails(capsys, good_run, mars_copy)
    assert f"Attribute file '{path}' lacks the column(s) ['age', 'hat']" in err
    assert "Fix: re-download the attribute annotations" in err


def test_attribute_csv_with_a_duplicate_row(capsys, good_run, mars_copy):
    path = edit_csv(mars_copy, lambda df: pd.concat([df, df.iloc[[0]]]))
    err = fails(capsys, good_run, mars_copy)
    n = len(pd.read_csv(path))
    assert f"'{path}' has 2 rows sharing a (person_id, camera_id, tracklets_id) key" in err
    assert f"on lines [2, {n + 1}]" in err and "Every tracklet needs exactly one row" in err


def test_attribute_csv_with_an_out_of_range_value(capsys, good_run, mars_copy):
    def edit(df):
        df.loc[2, "age"] = 4                    # age has 4 classes, 0..3
        return df

    path = edit_csv(mars_copy, edit)
    err = fails(capsys, good_run, mars_copy)
    assert f"'{path}', line 4, column 'age': value 4 is outside the 4 classes [0, 3]" in err
    assert "Fix: check that the file belongs to this dataset" in err


def test_train_tracklet_without_an_attribute_row(capsys, good_run, mars_copy):
    key = first_train_key(mars_copy)
    path = edit_csv(mars_copy, lambda df: df.drop(index=csv_row(df, key)))
    err = fails(capsys, good_run, mars_copy)
    assert f"1 train tracklet(s) have no row in the attribute file '{path}'" in err
    assert f"pid {key[0]}, camera {key[1]}, tracklet {key[2]}" in err
    assert "Fix: use the attribute file that belongs to this split, or set ATTR_RECOG_ON" in err


# ----------------------------------------------------------------------------- config
def test_config_typo_on_the_command_line(capsys, good_run, tiny_mars):
    err = fails(capsys, good_run, tiny_mars, "SOLVER.MAX_EPOCH", "3")
    assert "Unknown config key 'SOLVER.MAX_EPOCH' in the command line" in err
    assert "Did you mean SOLVER.MAX_EPOCHS" in err


def test_config_typo_in_a_yml_file(capsys, good_run, tiny_mars, tmp_path):
    yml = tmp_path / "typo.yml"
    yml.write_text("SOLVER:\n  BASE_LR: 0.001\n  WARMUP_ITER: 5\n")
    out, before = good_run
    code = main_baseline.main(["--config_file", str(yml), *tiny_opts(tiny_mars, out, 1)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert f"Unknown config key 'SOLVER.WARMUP_ITER' in '{yml}'" in err
    assert "Did you mean SOLVER.WARMUP_ITERS" in err
    assert _checkpoints(out) == before


@pytest.mark.parametrize("key, value, allowed", [
    ("MODEL.NECK", "bnnek", "bnneck, no"),
    ("DATALOADER.SAMPLER", "softmax-triplet", "softmax, triplet, softmax_triplet"),
])
def test_bad_enumerated_value(capsys, good_run, tiny_mars, key, value, allowed):
    err = fails(capsys, good_run, tiny_mars, key, value)
    assert f"Invalid value '{value}' for {key}; allowed values: {allowed}." in err


def test_batch_not_a_multiple_of_num_instance(capsys, good_run, tiny_mars):
    err = fails(capsys, good_run, tiny_mars, "SOLVER.SEQS_PER_BATCH", "5")
    assert ("The batch of 5 tracklets per process (SOLVER.SEQS_PER_BATCH 5 / 1 process(es)) "
            "must be a multiple of DATALOADER.NUM_INSTANCE (2)") in err


@pytest.mark.parametrize("extra, message", [
    (("SOLVER.SEQS_PER_BATCH", "16"),                     # 8 ids x 2; tiny_mars trains 6
     "A batch needs 8 identities per process (SOLVER.SEQS_PER_BATCH 16 / DATALOADER."
     "NUM_INSTANCE 2), but the training set has 6 identities. Lower SOLVER.SEQS_PER_BATCH"),
    (("DATALOADER.SAMPLER", "softmax", "SOLVER.SEQS_PER_BATCH", "64"),
     "The training set has 18 tracklets, fewer than one batch (SOLVER.SEQS_PER_BATCH 64). "
     "Lower SOLVER.SEQS_PER_BATCH."),
])
def test_more_instances_than_the_dataset_can_fill(capsys, good_run, tiny_mars, extra, message):
    err = fails(capsys, good_run, tiny_mars, *extra)
    assert message in err


# ------------------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("mode", ["eval-only", "resume"])
def test_checkpoint_of_another_architecture_lists_the_keys(capsys, good_run, tiny_mars, mode):
    out, before = good_run
    ckpt = next(p for p in before if p.endswith("/checkpoint_ep1.pth"))
    if mode == "eval-only":
        extra = ("MODEL.NAME", "resnet34", "--eval-only", "TEST.WEIGHT", ckpt)
    else:
        extra = ("MODEL.FUSION_METHOD", "TA", "SOLVER.MAX_EPOCHS", "2", "--resume", ckpt)
    err = fails(capsys, good_run, tiny_mars, *extra)
    assert f"The checkpoint '{ckpt}'" in err
    assert "does not fit the model built from the config" in err
    if mode == "eval-only":
        assert "80 missing keys (base.layer1.2.conv1.weight, base.layer1.2.bn1.weight" in err
        assert "backbone is resnet18, not MODEL.NAME resnet34: set MODEL.NAME resnet18" in err
    else:
        assert "5 shape differences (bottleneck.weight: file [1536] vs model [512]" in err
        assert "MODEL.FUSION_METHOD" in err
    assert "Fix: build the model the checkpoint was trained with" in err


# ------------------------------------------------------------------------ interruptions
def test_crash_while_writing_a_checkpoint_keeps_the_good_one(tiny_mars, tmp_path, monkeypatch):
    out = tmp_path / "out"
    real_save = torch.save

    def dies_on_epoch_2(obj, f, *args, **kwargs):
        if isinstance(obj, dict) and obj.get("epoch") == 2:
            f.write(b"half a checkpoint")
            raise OSError("No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", dies_on_epoch_2)
    with pytest.raises(OSError, match="No space left"):
        main_baseline.main(["--config_file", "", *tiny_opts(tiny_mars, out, 2)])
    monkeypatch.undo()
    (run,) = run_dirs(out)
    assert (run / "last_checkpoint").read_text().strip() == "checkpoint_ep1.pth"
    assert load_file(str(run / "checkpoint_ep1.pth"))["epoch"] == 1
    assert not (run / "checkpoint_ep2.pth").exists()
    assert not list(run.glob(".tmp-*"))                        # no half file left behind
    # --resume without a path finds checkpoint_ep1.pth and finishes the run
    assert main_baseline.main(["--config_file", "", *tiny_opts(tiny_mars, out, 2),
                               "--resume"]) == 0
    assert load_file(str(run_dirs(out)[-1] / "checkpoint_ep2.pth"))["epoch"] == 2


def test_concurrent_runs_get_their_own_folders(tmp_path, monkeypatch):
    monkeypatch.setattr(defaults.time, "strftime", lambda fmt: "20260101-000000")  # same second
    folders, barrier = [], threading.Barrier(8)

    def start():
        barrier.wait()
        folders.append(defaults.make_run_dir(str(tmp_path)))

    threads = [threading.Thread(target=start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(folders)) == 8 and all(Path(f).is_dir() for f in folders)


# ----------------------------------------------------------------------- tools.verify
def verify_cli(capsys, root: Path, *extra: str) -> tuple[int, str]:
    code = verify.main(["--config_file", "", "DATASETS.ROOT_DIR", str(root), *extra,
                        "--no-progress", "--workers", "1"])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    return code, captured.out + captured.err


def test_verify_clean_synthetic_datasets(capsys, tiny_mars, tiny_duke):
    code, out = verify_cli(capsys, tiny_mars)
    assert code == 0 and out.rstrip().endswith("OK: no problem found.")
    assert "synthetic dataset" in out and "comparison with the published statistics is " \
                                          "skipped" in out
    assert "tracklets with an attribute row: train 18/18, query 6/6" in out
    report = verify_dataset(_cfg(tiny_duke, "DATASETS.NAME", "duke"), workers=2)
    assert report.ok and report.images == sum(f for *_, f in report.statistics.values())


def test_verify_names_each_injected_problem(capsys, mars_copy):
    names = train_names(mars_copy)
    deleted = mars_copy / "bbox_train" / names[0][:4] / names[0]
    deleted.unlink()
    test_name = (mars_copy / "info" / "test_name.txt").read_text().split()[-1]
    truncated = mars_copy / "bbox_test" / test_name[:4] / test_name
    truncated.write_bytes(truncated.read_bytes()[:100])
    key = first_train_key(mars_copy)
    csv = edit_csv(mars_copy, lambda df: df.drop(index=csv_row(df, key)))

    code, out = verify_cli(capsys, mars_copy, "--workers", "2")   # options among overrides
    assert code == 1
    assert f"{deleted}: missing; train tracklet pid {key[0]}, camera {key[1]}, tracklet " \
           f"{key[2]}" in out
    assert f"{truncated}: cannot be decoded (OSError: " in out and "runcated" in out
    assert "fix: restore the file(s) from bbox_train.zip" in out
    assert "fix: restore the file(s) from bbox_test.zip" in out
    assert f"train tracklet pid {key[0]}, camera {key[1]}, tracklet {key[2]} (first image " \
           f"{deleted}) has no row in '{csv}'" in out
    assert "FAILED: 3 problem(s) (attributes 1, images 2)" in out

    report = verify_dataset(_cfg(mars_copy), workers=1)
    assert [(p.check, p.path) for p in report.problems] == [
        ("attributes", str(deleted.parent)), ("images", str(deleted)), ("images", str(truncated))]


def test_verify_lists_every_bad_csv_line(mars_copy):
    def edit(df):
        df = df.astype(str)
        df.loc[0, "age"] = "7"
        df.loc[1, "hat"] = "x"
        df.loc[2, "gender"] = "-1"
        return pd.concat([df, df.iloc[[5]], df.iloc[[5]]])

    csv = edit_csv(mars_copy, edit)
    problems = verify_dataset(_cfg(mars_copy), workers=1).problems
    n = len(pd.read_csv(csv))
    assert [p.what for p in problems] == [
        f"'{csv}', line 2, column 'age': value 7 is outside the 4 classes [0, 3] of this "
        "attribute",
        f"'{csv}', line 3, column 'hat': 'x' is not an integer",
        f"'{csv}', line 4, column 'gender': value -1 is outside the 2 classes [0, 1] of this "
        "attribute",
        f"'{csv}' has 3 rows sharing a (person_id, camera_id, tracklets_id) key: "
        f"{first_key_of_line(csv, 7)} on lines [7, {n}, {n + 1}]. Every tracklet needs exactly "
        "one row",
    ]


def first_key_of_line(csv: Path, line: int) -> tuple[int, int, int]:
    row = pd.read_csv(csv).iloc[line - 2]
    return int(row["person_id"]), int(row["camera_id"]), int(row["tracklets_id"])


def test_verify_compares_counts_with_the_published_split(mars_copy):
    (mars_copy / MARKER_NAME).unlink()
    report = verify_dataset(_cfg(mars_copy), workers=1)
    counts = [p.what for p in report.problems if p.check == "counts"]
    assert counts == ["train: 6 identities (published 625), 18 tracklets (published 8298), "
                      f"{report.statistics['train'][2]} frames (published 509914)",
                      "query: 6 identities (published 626), 6 tracklets (published 1980)",
                      f"gallery: {report.statistics['gallery'][0]} identities (published 621), "
                      f"{report.statistics['gallery'][1]} tracklets (published 9330)"]
    assert all("re-download" in p.fix for p in report.problems)


def test_verify_stops_at_a_split_file_problem(capsys, mars_copy):
    path = mars_copy / "info" / "tracks_train_info.mat"
    sio.savemat(path, {"wrong": sio.loadmat(path)["track_train_info"]})
    code, out = verify_cli(capsys, mars_copy)
    assert code == 1
    assert f"'{path}' has no variable 'track_train_info' (it holds ['wrong'])" in out
    assert "fix: re-download the MARS info/ files" in out and "not checked" in out


def test_verify_usage_and_config_errors(capsys, tmp_path):
    code, out = verify_cli(capsys, tmp_path / "absent")
    assert code == 1 and f"{tmp_path / 'absent'}: the dataset folder does not exist" in out
    code, out = verify_cli(capsys, tmp_path, "DATASETS.NAMEE", "mars")
    assert code == 2 and "error: Unknown config key 'DATASETS.NAMEE'" in out
    code, out = verify_cli(capsys, "")
    assert code == 2 and "error: DATASETS.ROOT_DIR is empty" in out
    with pytest.raises(SystemExit) as e:                          # argparse: bad option value
        verify.main(["--workers", "many"])
    assert e.value.code == 2


def _cfg(root: Path, *opts: str):
    return load_cfg(None, ["DATASETS.ROOT_DIR", str(root), *opts])


def test_failed_evaluation_keeps_the_trained_epoch(tiny_mars, tmp_path, monkeypatch, capsys):
    from engine.trainer import Trainer

    def broken(self, epoch):
        raise UserError(f"cannot read a gallery image at epoch {epoch}")

    monkeypatch.setattr(Trainer, "evaluate", broken)
    out = tmp_path / "evalfail"
    opts = tiny_opts(tiny_mars, out, 2) + ["SOLVER.EVAL_PERIOD", "1",
                                           "SOLVER.CHECKPOINT_PERIOD", "5"]
    assert main_baseline.main(["--config_file", "", *opts]) == 2
    assert "gallery image at epoch 1" in capsys.readouterr().err
    (run,) = run_dirs(out)
    assert (run / "last_checkpoint").read_text().strip() == "checkpoint_ep1.pth"
    assert load_file(str(run / "checkpoint_ep1.pth"))["epoch"] == 1
