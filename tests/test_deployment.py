"""From a folder of tracklets to deployment: train on a synthetic folder dataset (with "bce"
or "mce" attributes, and without), export features, search, compare with ``--eval-only``,
export ONNX with parity; and every bad input of the commands."""

import csv
import importlib.util
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import main_baseline
from config import load_cfg
from data import make_data_loaders
from data.attributes import decode_attribute_logits
from engine.evaluator import extract_features
from tests.helpers import run_dirs, tiny_opts
from tools import export_features, export_onnx, search
from tools.export_features import load_trained_model
from tools.synthetic import write_synthetic_dataset

HAVE_ONNX = all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))
needs_onnx = pytest.mark.skipif(not HAVE_ONNX, reason="onnx and onnxruntime are not installed "
                                "(pip install onnx onnxruntime)")
MODES = {"bce": ["DATASETS.ATTRIBUTE_LOSS", "bce"], "mce": ["DATASETS.ATTRIBUTE_LOSS", "mce"],
         "none": ["ATTR_RECOG_ON", "False", "MODEL.FUSION_METHOD", "TA"]}


@pytest.fixture(scope="module", params=list(MODES))
def trained(request, tmp_path_factory):
    """A 2-epoch run on a synthetic folder dataset: its root, options and last checkpoint."""
    base = tmp_path_factory.mktemp(f"deploy_{request.param}")
    root = write_synthetic_dataset(base / "mine", "folder", ids=8, tracklets=3, frames=4,
                                   size=(32, 16), seed=5, attributes=request.param != "none")
    opts = [*tiny_opts(root, base / "out", 2), "DATASETS.NAME", "folder", *MODES[request.param]]
    assert main_baseline.main(["--config_file", "", *opts]) == 0
    weight = run_dirs(base / "out")[-1] / "checkpoint_ep2.pth"
    assert weight.is_file()
    return SimpleNamespace(mode=request.param, root=root, opts=opts, weight=str(weight),
                           base=base)


def export(trained, split: str, out: Path, capsys) -> dict:
    """Run tools.export_features; the arrays of the file."""
    code = export_features.main(["--config_file", "", *trained.opts, "--split", split, "--out",
                                 str(out), "--no-progress", "TEST.WEIGHT", trained.weight])
    assert code == 0, capsys.readouterr().err
    with np.load(out) as npz:
        return {k: npz[k] for k in npz.files}


def test_train_export_search_equals_eval_only(trained, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main_baseline.main(["--config_file", "", *trained.opts, "OUTPUT_DIR", str(out),
                               "--eval-only", "TEST.WEIGHT", trained.weight]) == 0
    evaluated = json.loads((run_dirs(out)[-1] / "metrics.json").read_text())["evaluations"][0]
    q = export(trained, "query", tmp_path / "q.npz", capsys)
    g = export(trained, "gallery", tmp_path / "g.npz", capsys)
    assert str(g["tracklets"][0]).startswith("gallery/") and 0 in g["pids"]   # distractors
    with_attr = trained.mode != "none"
    assert sorted(q) == sorted(["features", "pids", "camids", "tracklets", "meta"]
                               + (["attr_pred"] if with_attr else []))
    meta = json.loads(str(q["meta"]))
    assert meta["feat_dim"] == q["features"].shape[1] and meta["split"] == "query"
    assert (meta["pool"], meta["feat_norm"], meta["metric"]) == ("avg", True, "cosine")
    assert meta["weights"] == trained.weight and meta["root"] == str(trained.root)
    assert str(q["tracklets"][0]).startswith("query/") and q["features"].dtype == np.float32
    if with_attr:
        assert q["attr_pred"].shape == (len(q["pids"]), 21) and len(meta["attr_names"]) == 21
    capsys.readouterr()
    ranks = tmp_path / "ranks.csv"
    assert search.main(["--query", str(tmp_path / "q.npz"), "--gallery",
                        str(tmp_path / "g.npz"), "--topk", "3", "--out", str(ranks)]) == 0
    printed = capsys.readouterr().out
    results = search.search(str(tmp_path / "q.npz"), str(tmp_path / "g.npz"), 3, str(ranks))
    for key in ("R1", "R5", "R10", "R20", "mAP"):
        assert results[key] == pytest.approx(evaluated[key], abs=1e-9), key
    assert f"{100 * evaluated['mAP']:.1f}" in printed and "R1" in printed
    with open(ranks, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["query", "rank", "gallery", "distance", "same_id"]
    assert len(rows) == 1 + 3 * len(q["pids"]) and rows[1][1:2] == ["1"]


def test_exported_features_are_the_evaluated_ones(trained, tmp_path, capsys):
    q = export(trained, "query", tmp_path / "q.npz", capsys)
    cfg = load_cfg(None, [*trained.opts, "TEST.WEIGHT", trained.weight])
    _, query_loader, _, dataset = make_data_loaders(cfg)
    model = load_trained_model(cfg, dataset, torch.device("cpu"))
    want = extract_features(model, query_loader, torch.device("cpu"), 8, "avg")
    np.testing.assert_array_equal(q["features"], want["feats"].numpy())
    np.testing.assert_array_equal(q["pids"], want["pids"])
    np.testing.assert_array_equal(q["camids"], want["camids"])
    if trained.mode != "none":
        np.testing.assert_array_equal(
            q["attr_pred"], decode_attribute_logits(want["attr_logits"], dataset.attr_lens))
    # any folder laid out as one split: the same tracklets give the same features
    folder = export(trained, str(trained.root / "query"), tmp_path / "f.npz", capsys)
    np.testing.assert_array_equal(folder["features"], q["features"])
    assert [f"query/{t}" for t in folder["tracklets"]] == q["tracklets"].tolist()
    train = export(trained, "train", tmp_path / "t.npz", capsys)
    assert set(train["pids"].tolist()) == {t.key[0] for t in dataset.train}   # not relabelled


@needs_onnx
def test_onnx_export_with_parity(trained, tmp_path, capsys):
    import onnxruntime

    out = tmp_path / "runs" / "x" / "model.onnx"           # missing folders are created
    assert export_onnx.main(["--config_file", "", *trained.opts, "--out", str(out),
                             "TEST.WEIGHT", trained.weight]) == 0
    printed = capsys.readouterr().out
    assert "feat: largest difference" in printed and f"wrote {out}" in printed
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (clips,) = session.get_inputs()
    assert clips.name == "clips" and clips.shape == ["batch", 2, 3, 32, 16]
    names = [o.name for o in session.get_outputs()]
    assert names == (["feat"] if trained.mode == "none" else ["feat", "attr_logits"])
    assert sorted(p.name for p in out.parent.iterdir()) == ["model.onnx"]


@needs_onnx
@pytest.mark.parametrize("trained", ["bce"], indirect=True)
def test_onnx_parity_failure_writes_nothing(trained, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(export_onnx, "PARITY_TOLERANCE", 0.0)
    out = tmp_path / "model.onnx"
    assert export_onnx.main(["--config_file", "", *trained.opts, "--out", str(out),
                             "TEST.WEIGHT", trained.weight]) == 1
    assert "differs from the torch one by more than 0" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_onnx_without_the_packages_says_how_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert export_onnx.main(["--out", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: python -m tools.export_onnx needs the packages onnx and "
                          "onnxruntime") and "pip install onnx onnxruntime" in err


# ------------------------------------------------------------------------------ bad inputs
def features_file(path: Path, n: int = 3, d: int = 4, drop: str = "", **meta) -> Path:
    arrays = {"features": np.ones((n, d), np.float32), "pids": np.arange(n),
              "camids": np.zeros(n, np.int64), "tracklets": np.array([f"t{i}" for i in range(n)]),
              "meta": np.array(json.dumps({"metric": "cosine", "feat_norm": True,
                                           "re_rank": False, **meta}))}
    arrays.pop(drop, None)
    np.savez(path, **arrays)
    return path


def search_error(capsys, query: Path, gallery: Path, tmp_path: Path) -> str:
    assert search.main(["--query", str(query), "--gallery", str(gallery), "--out",
                        str(tmp_path / "r.csv")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    return err


def test_search_bad_inputs_name_the_file_and_the_fix(tmp_path, capsys):
    good = features_file(tmp_path / "good.npz")
    lacking = features_file(tmp_path / "lacking.npz", drop="features")
    err = search_error(capsys, lacking, good, tmp_path)
    assert f"'{lacking}' lacks the field(s) ['features']" in err
    assert "python -m tools.export_features" in err
    wide = features_file(tmp_path / "wide.npz", d=8)
    err = search_error(capsys, good, wide, tmp_path)
    assert "are 4-dimensional, the gallery features" in err and "8-dimensional" in err
    not_npz = tmp_path / "x.npz"
    not_npz.write_text("hello")
    assert "is not a .npz feature file" in search_error(capsys, not_npz, good, tmp_path)
    assert "does not exist" in search_error(capsys, tmp_path / "none.npz", good, tmp_path)
    euclid = features_file(tmp_path / "euclid.npz", metric="euclid")
    assert "different metric" in search_error(capsys, good, euclid, tmp_path)
    short = tmp_path / "short.npz"
    np.savez(short, features=np.ones((3, 4)), tracklets=np.array(["a", "b"]), meta=np.array("{}"))
    assert "every other field hold N rows" in search_error(capsys, short, good, tmp_path)
    no_meta = tmp_path / "no_meta.npz"
    np.savez(no_meta, features=np.ones((2, 4)), tracklets=np.array(["a", "b"]),
             meta=np.array("[1]"))
    assert "meta must be a JSON object with" in search_error(capsys, no_meta, good, tmp_path)
    assert search.main(["--query", str(good), "--gallery", str(good), "--out",
                        str(tmp_path / "r.csv"), "--topk", "0"]) == 2


def test_search_without_pids_ranks_without_metrics(tmp_path, capsys):
    q = features_file(tmp_path / "q.npz", drop="pids")
    g = features_file(tmp_path / "g.npz", n=5)
    assert search.search(str(q), str(g), 2, str(tmp_path / "r.csv")) is None
    rows = (tmp_path / "r.csv").read_text().splitlines()
    assert len(rows) == 1 + 3 * 2 and rows[1].endswith(",")          # same_id unknown


@pytest.mark.parametrize("trained", ["none"], indirect=True)
def test_export_features_bad_split_and_missing_weights(trained, tmp_path, capsys):
    args = ["--config_file", "", *trained.opts, "--out", str(tmp_path / "x.npz"),
            "--no-progress"]
    assert export_features.main([*args, "--split", "validation", "TEST.WEIGHT",
                                 trained.weight]) == 2
    assert "--split 'validation' is neither one of query, gallery, train nor a folder" in \
        capsys.readouterr().err
    assert export_features.main([*args, "--split", "query"]) == 2
    assert "No weights given: add TEST.WEIGHT" in capsys.readouterr().err
    assert export_features.main([*args, "--split", str(trained.root), "TEST.WEIGHT",
                                 trained.weight]) == 2
    assert "Pid folder" in capsys.readouterr().err          # the root is no split folder
    assert not (tmp_path / "x.npz").exists()


@pytest.mark.parametrize("tool", ["features", "onnx", "search"])
@pytest.mark.parametrize("where", ["under a file", "a folder", "a name too long"])
def test_an_unwritable_out_fails_before_any_work(tmp_path, capsys, monkeypatch, tool, where):
    if tool == "onnx" and not HAVE_ONNX:
        pytest.skip("onnx and onnxruntime are not installed")

    def no_work(*args, **kwargs):
        raise AssertionError("worked before checking --out")

    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    out = str({"under a file": blocker / "new" / "x.out", "a folder": tmp_path,
               "a name too long": tmp_path / "new" / "sub" / ("x" * 300)}[where])
    opts = [*tiny_opts(tmp_path / "data", tmp_path / "runs"), "DATASETS.NAME", "folder",
            "TEST.WEIGHT", str(tmp_path / "model.pth")]          # neither is read
    if tool == "features":
        monkeypatch.setattr(export_features, "export_features", no_work)
        code = export_features.main(["--config_file", "", *opts, "--split", "query",
                                     "--out", out])
    elif tool == "onnx":
        monkeypatch.setattr(export_onnx, "load_trained_model", no_work)
        code = export_onnx.main(["--config_file", "", *opts, "--out", out])
    else:
        monkeypatch.setattr(search, "load_features", no_work)
        code = search.main(["--query", "q.npz", "--gallery", "g.npz", "--out", out])
    assert code == 2
    assert capsys.readouterr().err.startswith(f"error: --out '{out}' cannot be written (")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]   # no folder left made
    assert blocker.read_text() == "x"


@pytest.mark.parametrize("trained", ["none"], indirect=True)
def test_every_tool_creates_the_missing_folders_of_out(trained, tmp_path, capsys):
    """``--out runs/x/...`` works in export_features and search (export_onnx: the parity
    test), the folders made before any work."""
    q = tmp_path / "runs" / "x" / "q.npz"
    assert export(trained, "query", q, capsys)["features"].shape[0] > 0
    ranks = tmp_path / "runs" / "y" / "z" / "ranks.csv"
    assert search.main(["--query", str(q), "--gallery", str(q), "--topk", "1",
                        "--out", str(ranks)]) == 0
    assert ranks.read_text().startswith("query,rank,gallery,distance,same_id")
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["x", "y"]


def test_search_says_how_many_it_wrote_when_the_gallery_is_short(tmp_path, capsys):
    """--topk 99 against 20 gallery tracklets, all on other cameras: the top-20 is written,
    and said so; with the camera rule leaving one query 19, the range is said."""
    def npz(path, pids, camids):
        n = len(pids)
        np.savez(path, features=np.random.default_rng(n).normal(size=(n, 4)).astype(np.float32),
                 pids=np.array(pids), camids=np.array(camids),
                 tracklets=np.array([f"t{i}" for i in range(n)]),
                 meta=np.array(json.dumps({"metric": "cosine", "feat_norm": True,
                                           "re_rank": False})))
        return str(path)

    q = npz(tmp_path / "q.npz", [0, 1], [0, 0])
    g = npz(tmp_path / "g.npz", list(range(20)), [1] * 20)
    out = tmp_path / "r.csv"
    assert search.main(["--query", q, "--gallery", g, "--topk", "99", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert (f"wrote the top-20 of every query (all 20 gallery tracklets: fewer than --topk 99) "
            f"to {out}") in printed
    assert "top-99" not in printed
    assert len(out.read_text().splitlines()) == 1 + 2 * 20
    g = npz(tmp_path / "g2.npz", list(range(20)), [0] + [1] * 19)   # pid 0 on the query's camera
    assert search.main(["--query", q, "--gallery", g, "--topk", "99", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "wrote the top-19 to top-20 of the queries" in printed
    assert "seen by the query's camera is no retrieval" in printed
    assert len(out.read_text().splitlines()) == 1 + 19 + 20
    assert search.main(["--query", q, "--gallery", g, "--topk", "5", "--out", str(out)]) == 0
    assert f"wrote the top-5 of every query to {out}" in capsys.readouterr().out
