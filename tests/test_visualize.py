"""Pictures: the drawing primitives on synthetic inputs, and the commands on a tiny trained run."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import main_baseline
from config import load_cfg
from tests.helpers import ROOT, run_dirs, tiny_opts
from tools import architecture, visualize
from utils import pictures
from utils.errors import UserError


@pytest.fixture(scope="module")
def trained_run(tiny_mars, tmp_path_factory):
    out = tmp_path_factory.mktemp("vis")
    assert main_baseline.main(["--config_file", "", *tiny_opts(tiny_mars, out, epochs=1)]) == 0
    (run,) = run_dirs(out)
    return tiny_mars, out, run


def _assert_picture(path, min_size=(100, 60)):
    img = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)
    assert img.shape[1] >= min_size[0] and img.shape[0] >= min_size[1]
    assert img.std() > 10.0, f"{path} is (nearly) blank"
    return img


def test_training_writes_curves(trained_run):
    _, _, run = trained_run
    img = _assert_picture(run / "curves.png")
    assert img.shape[:2] == (400, 1500)          # figsize 15 x 4 at 100 dpi


def _run_python(code: str) -> None:
    """Run ``code`` in a fresh interpreter at the repository root; fail with its stderr."""
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_importing_pictures_does_not_load_matplotlib():
    _run_python("import utils.pictures, sys; assert 'matplotlib' not in sys.modules")


def test_plot_curves_from_records_without_training_code(tmp_path):
    out = tmp_path / "sub" / "curves.png"
    _run_python(f"""
import sys
from utils.pictures import plot_curves
epochs = [{{"epoch": e, "lr": 1e-3 / e, "seconds": 1.0, "loss_id": 3.0 / e,
           "loss_triplet": 0.3, "total": 3.3 / e}} for e in (1, 2, 3)]
evaluations = [{{"epoch": 3, "R1": 0.5, "R5": 0.8, "R10": 0.9, "R20": 1.0, "mAP": 0.4}}]
assert plot_curves(epochs, evaluations, {str(out)!r}) == {str(out)!r}
loaded = {{m.split(".")[0] for m in sys.modules}}
assert not loaded & {{"engine", "modeling", "layers", "solver", "data", "config", "torch"}}, loaded
""")
    img = _assert_picture(out)
    assert img.shape[:2] == (400, 1500)
    # no records: empty panels, still a picture
    assert pictures.plot_curves([], [], str(tmp_path / "empty.png")) == str(tmp_path / "empty.png")
    assert Image.open(tmp_path / "empty.png").size == (1500, 400)


def test_curves_command(trained_run, tmp_path):
    _, _, run = trained_run
    (run / "curves.png").unlink()
    assert visualize.main(["curves", str(run)]) == 0
    _assert_picture(run / "curves.png")
    assert visualize.main(["curves", str(tmp_path)]) == 2        # no metrics.json


def _solid_frames(folder, name, color, n):
    """``n`` frames of one colour, as a tracklet's image paths."""
    paths = []
    for i in range(n):
        path = folder / f"{name}_{i}.png"
        Image.new("RGB", (16, 32), color).save(path)
        paths.append(str(path))
    return tuple(paths)


def test_ranked_list_borders_mark_the_query_identity(tmp_path):
    blue = (20, 40, 230)
    query = (_solid_frames(tmp_path, "q", (200, 200, 0), 6), 7, 0, ())
    pids = [7, 3, 7, 5]                                   # ranks 1 and 3 are the query's id
    ranked = [(_solid_frames(tmp_path, f"g{r}", blue, 3), pid, 1, ()) for r, pid in
              enumerate(pids)]
    path = pictures.draw_ranked_list(query, ranked, [0.1, 0.2, 0.3, 0.4],
                                     [pid == query[1] for pid in pids], str(tmp_path / "r.png"))
    img = np.asarray(Image.open(path).convert("RGB")).astype(int)
    cell, border, top = pictures.CELL_W + 2 * pictures.BORDER + 4, pictures.BORDER, 18
    assert img.shape[:2] == (pictures.CELL_H + 2 * border + top + 16, 4 * 64 + 20 + 4 * cell)
    expected = [pictures.GREEN, pictures.RED, pictures.GREEN, pictures.RED]
    for r, colour in enumerate(expected):
        x = 4 * pictures.CELL_W + 20 + r * cell
        y_mid = top + border + pictures.CELL_H // 2
        for px, py in ((x + 1, y_mid), (x + cell - 6, y_mid), (x + cell // 2, top + 1)):
            assert tuple(img[py, px]) == colour, (r, px, py)    # left, right and top border
        assert tuple(img[y_mid, x + border + 4]) == blue          # the gallery frame inside
    assert tuple(img[top + 10, 10]) == (200, 200, 0)              # a query frame, no border


def test_top_k_skips_same_camera_matches():
    dist = np.array([0.5, 0.1, 0.3, 0.2, 0.3])
    g_pids, g_camids = np.array([1, 1, 2, 1, 3]), np.array([0, 0, 1, 1, 0])
    # gallery 1 (id 1, cam 0) is the query's own camera: not a retrieval; ties keep order
    assert visualize.top_k(dist, 1, 0, g_pids, g_camids, 3).tolist() == [3, 2, 4]
    assert visualize.top_k(dist, 1, 0, g_pids, g_camids, 10).tolist() == [3, 2, 4]


def test_ranks_command(trained_run, monkeypatch):
    root, out, run = trained_run
    weight = run / "checkpoint_ep1.pth"
    opts = tiny_opts(root, out) + ["TEST.WEIGHT", str(weight), "OUTPUT_DIR", str(run)]
    drawn = []

    def recording(query, ranked, distances, matches, out_path):
        drawn.append((query, ranked, distances, matches))
        return pictures.draw_ranked_list(query, ranked, distances, matches, out_path)

    monkeypatch.setattr(visualize, "draw_ranked_list", recording)
    assert visualize.main(["ranks", "--num-queries", "2", "--topk", "3", *opts]) == 0
    pngs = sorted((run / "ranks_checkpoint_ep1").glob("query_*.png"))
    assert len(pngs) == 2 == len(drawn)
    img = _assert_picture(pngs[0])
    # 4 query frames + gap + 3 bordered gallery cells of 64 px at 128 px height
    assert img.shape[1] == 4 * 64 + 20 + 3 * (64 + 8 + 4)
    assert img.shape[0] == 128 + 8 + 18 + 16
    for query, ranked, distances, matches in drawn:
        assert len(ranked) == 3 and distances == sorted(distances)
        assert matches == [g[1] == query[1] for g in ranked]            # green: the query's id
        assert not any(g[1] == query[1] and g[2] == query[2] for g in ranked)


def _best_checkpoints(run, folder):
    """Two best-rank-1 files as a demo run leaves them; the worse one is the newer file."""
    folder.mkdir()
    best, worse = folder / "rank1_0.75_checkpoint_ep2.pth", folder / "rank1_0.5_checkpoint_ep1.pth"
    for path in (best, worse):
        shutil.copy(run / "checkpoint_ep1.pth", path)
    os.utime(best, (1e9, 1e9))
    return best, worse


def test_readme_ranks_command_with_a_glob_of_two_best_checkpoints(trained_run, tmp_path):
    """The README's command as a shell runs it: the glob gives TEST.WEIGHT two paths."""
    _, _, run = trained_run
    best, _ = _best_checkpoints(run, tmp_path / "run")
    command = (f"{sys.executable} -m tools.visualize ranks --config_file {run}/config.yaml "
               f"TEST.WEIGHT {tmp_path}/run/rank1_*.pth")
    proc = subprocess.run(["bash", "-c", command], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    log = proc.stdout + proc.stderr
    assert f"TEST.WEIGHT: 2 files given; using {best}, the best rank-1." in log
    assert sorted((tmp_path / "run" / f"ranks_{best.stem}").glob("query_*.png"))


def test_one_weight_picks_among_several_paths(trained_run, tmp_path):
    _, _, run = trained_run
    best, worse = _best_checkpoints(run, tmp_path / "run")
    assert visualize.one_weight(["TEST.WEIGHT", str(best), "OUTPUT_DIR", "o"]) == [
        "TEST.WEIGHT", str(best), "OUTPUT_DIR", "o"]
    assert visualize.one_weight(["MODEL.NAME", "resnet18", "TEST.WEIGHT", str(worse), str(best),
                                 "OUTPUT_DIR", "o"]) == [
        "MODEL.NAME", "resnet18", "TEST.WEIGHT", str(best), "OUTPUT_DIR", "o"]
    other = tmp_path / "run" / "model.pth"                       # not all best-rank-1 names:
    shutil.copy(best, other)                                     # the newest file
    assert visualize.one_weight(["TEST.WEIGHT", str(best), str(other)])[1] == str(other)
    with pytest.raises(UserError, match="not found: '.*absent.pth'"):
        visualize.one_weight(["TEST.WEIGHT", str(best), str(tmp_path / "absent.pth")])


def test_attention_command(trained_run):
    root, out, run = trained_run
    opts = tiny_opts(root, out) + ["TEST.WEIGHT", str(run / "checkpoint_ep1.pth"),
                                   "OUTPUT_DIR", str(run)]
    assert visualize.main(["attention", "--tracklet", "1", *opts]) == 0
    (png,) = (run / "attention_checkpoint_ep1").glob("query_0001.png")
    img = _assert_picture(png)
    assert img.shape[0] == 4 * (128 + 6) + 6          # frames + identity + two attribute rows


def test_commands_fail_clearly_without_checkpoint(trained_run, capsys, tmp_path):
    root, out, _ = trained_run
    assert visualize.main(["ranks", *tiny_opts(root, out)]) == 2
    assert "TEST.WEIGHT" in capsys.readouterr().err
    missing = tmp_path / "none.pth"
    assert visualize.main(["attention", *tiny_opts(root, out), "TEST.WEIGHT", str(missing)]) == 2
    assert "none.pth" in capsys.readouterr().err


def test_metrics_json_feeds_curves(trained_run):
    _, _, run = trained_run
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs"] and "lr" in metrics["epochs"][0]


def _tiny_arch_opts(*extra):
    return ["MODEL.NAME", "resnet18", "INPUT.SIZE_TRAIN", "[64, 32]", "INPUT.SIZE_TEST",
            "[64, 32]", "DATASETS.NAME", "mars", "DATASETS.SEQ_LEN", "2", *extra]


def test_architecture_command(tmp_path):
    out = tmp_path / "sub" / "arch.png"
    argv = ["architecture", "--config_file", "", "--out", str(out), "--num-classes", "7"]
    assert visualize.main([*argv, *_tiny_arch_opts()]) == 0
    img = _assert_picture(out)
    assert img.shape[:2] == (700, 1400)                  # figsize 14 x 7 at 100 dpi
    # boxes of several colours: grey input/backbone, blue identity, green attribute, red loss
    colors = {tuple(c) for c in img.reshape(-1, 3).astype(int)}
    assert {(0xd6, 0xe6, 0xf5), (0xdc, 0xef, 0xd6), (0xf7, 0xd4, 0xd4)} <= colors
    # a bad override is a user error
    assert visualize.main([*argv, "MODEL.NAME", "resnet7"]) == 2


def _tree(folder):
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*")}


def test_architecture_without_out_writes_under_output_dir(tmp_path, monkeypatch):
    tracked = _tree(ROOT / "display_images")
    argv = ["architecture", "--config_file", "", "--num-classes", "7", *_tiny_arch_opts()]
    assert visualize.main([*argv, "OUTPUT_DIR", str(tmp_path / "o")]) == 0
    _assert_picture(tmp_path / "o" / "architecture.png")
    monkeypatch.chdir(tmp_path)                  # the default config's OUTPUT_DIR, from the cwd
    assert visualize.main(argv) == 0
    _assert_picture(tmp_path / load_cfg(str(ROOT / "configs" / "mars_aitl.yml")).OUTPUT_DIR
                    / "architecture.png")
    assert visualize.main([*argv, "OUTPUT_DIR", ""]) == 0       # empty: output/
    _assert_picture(tmp_path / "output" / "architecture.png")
    assert _tree(ROOT / "display_images") == tracked


def test_usage_lines_name_the_module():
    parser, commands = visualize.build_parsers()
    assert parser.format_usage().startswith("usage: python -m tools.visualize ")
    assert commands["ranks"].format_usage().startswith("usage: python -m tools.visualize ranks")


def test_architecture_shapes_come_from_the_model():
    cfg = load_cfg("", _tiny_arch_opts())
    info = architecture.describe_architecture(cfg, num_classes=7)
    assert (info["C"], info["h"], info["w"], info["T"]) == (512, 4, 2, 2)   # 64x32 / 16
    assert info["feat_dim"] == 3 * 512 and info["num_classes"] == 7
    assert info["group_widths"] == [25, 41] and info["group_sizes"] == [9, 12]
    assert info["positions"] == 8 and info["attr_map"] == (4, 2)
    assert (info["distance"], info["margin"]) == (cfg.DISTANCE, cfg.SOLVER.MARGIN)
    info = architecture.describe_architecture(
        load_cfg("", _tiny_arch_opts("MODEL.LAST_STRIDE", "2", "ATTR_RECOG_ON", "False")))
    assert (info["h"], info["w"]) == (2, 1)                                  # 64x32 / 32
    assert info["attr_mode"] is None and info["feat_dim"] == 512 and info["fusion"] == "TA"
    assert info["num_classes"] == 625                                        # MARS train ids


def test_architecture_loss_formula_comes_from_the_criterion():
    info = architecture.describe_architecture(load_cfg("", _tiny_arch_opts()), num_classes=7)
    assert [n for n, _ in info["loss_terms"]] == ["loss_id", "loss_triplet",
                                                  "loss_aitl_unrelated", "loss_aitl_related",
                                                  "loss_attr"]
    assert pictures.formula_lines(info["loss_formula"]) == [
        "total = ID + (triplet + AITL1 + AITL2) / 3", "          + BCE1 + BCE2"]
    info = architecture.describe_architecture(load_cfg("", _tiny_arch_opts(
        "ATTR_RECOG_ON", "False", "SOLVER.USE_CENTER_LOSS", "True", "MODEL.IF_WITH_CENTER",
        "yes", "MODEL.METRIC_LOSS_TYPE", "triplet_center", "SOLVER.CENTER_LOSS_WEIGHT", "0.01")),
        num_classes=7)
    assert info["center_loss"] and info["loss_formula"] == "total = ID + triplet + 0.01 * center"


def test_architecture_without_attributes_draws(tmp_path):
    cfg = load_cfg("", _tiny_arch_opts("ATTR_RECOG_ON", "False", "MODEL.NECK", "no"))
    path = pictures.draw_architecture(architecture.describe_architecture(cfg, 5),
                                      str(tmp_path / "a.png"), "tiny")
    img = _assert_picture(path)
    colors = {tuple(c) for c in img.reshape(-1, 3).astype(int)}
    assert (0xdc, 0xef, 0xd6) not in colors                # no attribute streams drawn


def test_attribute_lines_mark_wrong_predictions():
    lines = pictures.attribute_lines(["a", "b", "c"], [1, 2], [2, 3, 2], pred=[1, 2, 0],
                                      truth=[1, 0, -1])
    body = [(t, c) for t, c in lines if t.startswith(("a ", "b ", "c "))]
    assert [c for _, c in body] == [(0, 0, 0), pictures.RED, (120, 120, 120)]
    assert "1 / 1" in body[0][0] and "2 / 0" in body[1][0] and "0 / ?" in body[2][0]


def test_ranks_of_two_checkpoints_of_one_run_do_not_overwrite_each_other(trained_run, tmp_path):
    root, out, run = trained_run
    folder = tmp_path / "two"
    best, worse = _best_checkpoints(run, folder)
    for weight in (best, worse):
        assert visualize.main(["ranks", "--num-queries", "1", "--topk", "2",
                               *tiny_opts(root, out), "TEST.WEIGHT", str(weight)]) == 0
    assert len(list((out / f"ranks_{best.stem}").glob("query_*.png"))) == 1   # OUTPUT_DIR
    assert len(list((out / f"ranks_{worse.stem}").glob("query_*.png"))) == 1


def test_attention_frames_are_the_evenly_sampled_clip():
    # a short tracklet is cycled, as clip sampling does
    paths = ("a.jpg", "b.jpg")
    assert visualize._clip_frames(paths, 5) == ["a.jpg", "b.jpg", "a.jpg", "b.jpg", "a.jpg"]
    # "evenly" sampling: frames 0, s, 2s, .. with stride s = (n - n % T) // T
    frames = tuple("abcdefghij")                                      # 10 frames, T=4: s=2
    assert visualize._clip_frames(frames, 4) == ["a", "c", "e", "g"]
    assert visualize._clip_frames(frames[:8], 4) == ["a", "c", "e", "g"]   # not the last, h
    assert visualize._clip_frames(frames, 3) == ["a", "d", "g"]              # s=3
    assert visualize._clip_frames(frames[:4], 4) == ["a", "b", "c", "d"]
