"""Helpers shared by the tests: paths, tiny datasets in the real layouts, tiny run options.

Fixtures live in ``conftest.py``; plain functions and constants live here, so that no test
module imports another.
"""

import csv
from pathlib import Path

import numpy as np
import scipy.io as sio
from PIL import Image

from data.attributes import DUKE_SCHEMA, MARS_SCHEMA

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SHARED_DATA = SHARED / "data"
MARS_ATTR_LENS = MARS_SCHEMA.attr_lens
DUKE_ATTR_LENS = DUKE_SCHEMA.attr_lens

# ----------------------------------------------------------------------------- writers
def frame_value(k: int) -> int:
    """Grey level of frame k (1-based) of the tiny datasets: decodes back to k."""
    return 10 * k + 5


def write_frame(path: Path, k: int, size=(8, 4)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size[1], size[0]), (frame_value(k),) * 3).save(path, quality=95)


def mars_attrs(pid: int, cam: int, tid: int) -> list[int]:
    """A deterministic, in-range attribute row for (pid, cam, tracklet)."""
    lens = MARS_SCHEMA.flat_lens
    return [(pid * 7 + cam * 3 + tid + i) % n for i, n in enumerate(lens)]


# (pid, camera, tracklet number, frames) rows of the tiny MARS split
TINY_MARS_TRAIN = [(3, 1, 1, 3), (3, 2, 2, 5), (7, 1, 1, 2), (12, 6, 4, 6), (12, 3, 2, 4)]
TINY_MARS_TEST = [(-1, 1, 1, 3), (0, 2, 1, 4), (2, 1, 1, 5), (2, 3, 2, 3), (5, 2, 7, 2),
                  (0, 4, 2, 3), (5, 4, 9, 4), (-1, 2, 2, 2), (9, 5, 1, 6)]
TINY_MARS_QUERY_ROWS = [3, 5]          # 1-based rows of TINY_MARS_TEST: (2,1,1) and (5,2,7)


def mars_name(pid: int, cam: int, tid: int, k: int) -> str:
    p = "00-1" if pid == -1 else f"{pid:04d}"
    return f"{p}C{cam}T{tid:04d}F{k:03d}.jpg"


def write_tiny_mars(root: Path, images: bool = True, csv_rows: bool = True) -> Path:
    """A tiny MARS folder in the real layout (solid grey frames encode the frame number)."""
    (root / "info").mkdir(parents=True)
    rows = []
    for split, tracks, key in (("train", TINY_MARS_TRAIN, "track_train_info"),
                               ("test", TINY_MARS_TEST, "track_test_info")):
        names, table = [], []
        for pid, cam, tid, n in tracks:
            table.append([len(names) + 1, len(names) + n, pid, cam])
            names += [mars_name(pid, cam, tid, k) for k in range(1, n + 1)]
            if pid > 0:
                rows.append([pid, cam, tid, *mars_attrs(pid, cam, tid)])
        (root / "info" / f"{split}_name.txt").write_text("\n".join(names) + "\n")
        sio.savemat(root / "info" / f"tracks_{split}_info.mat", {key: np.array(table)})
        (root / f"bbox_{split}").mkdir()
        if images:
            for name in names:
                write_frame(root / f"bbox_{split}" / name[:4] / name, int(name[12:15]))
    sio.savemat(root / "info" / "query_IDX.mat",
                {"query_IDX": np.array([TINY_MARS_QUERY_ROWS], dtype=np.uint16)})
    if csv_rows:
        with open(root / "mars_attributes.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["person_id", "camera_id", "tracklets_id", *MARS_SCHEMA.names])
            w.writerows(rows)
    return root


# (pid, tracklet number, camera, frames) of the tiny Duke split
TINY_DUKE = {
    "train": [(4, 1, 2, 3), (4, 2, 5, 2), (9, 3, 1, 4)],
    "query": [(6, 5, 3, 2), (8, 8, 1, 3)],
    "gallery": [(6, 5, 3, 2), (6, 6, 4, 3), (8, 8, 1, 3), (8, 9, 2, 2), (11, 10, 7, 4)],
}


def duke_attrs(pid: int, cam: int, tid: int) -> list[int]:
    return [(pid + cam + 2 * tid + i) % n for i, n in enumerate(DUKE_SCHEMA.flat_lens)]


def write_tiny_duke(root: Path) -> Path:
    """A tiny DukeMTMC-VideoReID folder (query tracklets also in the gallery)."""
    rows = set()
    for split, tracks in TINY_DUKE.items():
        for pid, tid, cam, n in tracks:
            for k in range(1, n + 1):
                write_frame(root / split / f"{pid:04d}" / f"{tid:04d}"
                            / f"{pid:04d}_C{cam}_F{k:04d}_X{k:05d}.jpg", k)
            if split != "query":
                rows.add((pid, cam, tid))
    with open(root / "duke_attributes.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["person_id", "camera_id", "tracklets_id", *DUKE_SCHEMA.names])
        w.writerows([*r, *duke_attrs(*r)] for r in sorted(rows))
    return root


# ----------------------------------------------------------------------------- runs
def tiny_opts(root: Path, out: Path, epochs: int = 2) -> list[str]:
    """Overrides of a seconds-long CPU run on ``tiny_mars`` (batch 4 = 2 ids x 2 tracklets)."""
    return [
        "MODEL.DEVICE", "cpu", "MODEL.NAME", "resnet18", "MODEL.PRETRAIN_CHOICE", "none",
        "INPUT.SIZE_TRAIN", "[32, 16]", "INPUT.SIZE_TEST", "[32, 16]", "INPUT.PADDING", "2",
        "DATASETS.NAME", "mars", "DATASETS.ROOT_DIR", str(root), "DATASETS.SEQ_LEN", "2",
        "DATALOADER.SAMPLER", "softmax_triplet", "DATALOADER.NUM_INSTANCE", "2",
        "DATALOADER.NUM_WORKERS", "0", "SOLVER.SEQS_PER_BATCH", "4",
        "SOLVER.MAX_EPOCHS", str(epochs), "SOLVER.EVAL_PERIOD", "2",
        "SOLVER.CHECKPOINT_PERIOD", "1", "SOLVER.LOG_PERIOD", "1", "SOLVER.WARMUP_ITERS", "1",
        "SOLVER.STEPS", "[1]", "TEST.CLIPS_PER_BATCH", "8", "OUTPUT_DIR", str(out),
        # float32 on every CPU (FP_16 "auto" would be bfloat16 on CPUs with native bf16)
        "SOLVER.CPU_PRECISION", "float32",
    ]


def run_dirs(out: Path) -> list[Path]:
    """The run folders under an OUTPUT_DIR, oldest first."""
    return sorted(p for p in out.iterdir() if p.is_dir())
