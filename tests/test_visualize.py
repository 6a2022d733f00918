"""Pictures: ranked lists, attention maps and curves from a tiny trained run."""

import json

import numpy as np
import pytest
from PIL import Image

import main_baseline
from tests.conftest import run_dirs, tiny_opts
from utils import visualize


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


def test_curves_command(trained_run, tmp_path):
    _, _, run = trained_run
    assert visualize.main(["curves", str(run)]) == 0
    assert visualize.main(["curves", str(tmp_path)]) == 2        # no metrics.json


def test_ranks_command(trained_run):
    root, out, run = trained_run
    weight = run / "checkpoint_ep1.pth"
    opts = tiny_opts(root, out) + ["TEST.WEIGHT", str(weight), "OUTPUT_DIR", str(run)]
    assert visualize.main(["ranks", "--num-queries", "2", "--topk", "3", *opts]) == 0
    pngs = sorted((run / "ranks").glob("query_*.png"))
    assert len(pngs) == 2
    img = _assert_picture(pngs[0])
    # 4 query frames + gap + 3 bordered gallery cells of 64 px at 128 px height
    assert img.shape[1] == 4 * 64 + 20 + 3 * (64 + 8 + 4)
    assert img.shape[0] == 128 + 8 + 18 + 16
    # green (same id) or red (other id) borders are drawn
    colors = {tuple(c) for c in img.reshape(-1, 3).astype(int)}
    assert (40, 170, 60) in colors or (210, 40, 40) in colors


def test_attention_command(trained_run):
    root, out, run = trained_run
    opts = tiny_opts(root, out) + ["TEST.WEIGHT", str(run / "checkpoint_ep1.pth"),
                                   "OUTPUT_DIR", str(run)]
    assert visualize.main(["attention", "--tracklet", "1", *opts]) == 0
    (png,) = (run / "attention").glob("query_0001.png")
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


def test_architecture_shapes_come_from_the_model():
    from config import load_cfg

    info = visualize.describe_architecture(load_cfg("", _tiny_arch_opts()), num_classes=7)
    assert (info["C"], info["h"], info["w"], info["T"]) == (512, 4, 2, 2)   # 64x32 / 16
    assert info["feat_dim"] == 3 * 512 and info["num_classes"] == 7
    assert info["group_widths"] == [25, 41] and info["group_sizes"] == [9, 12]
    assert info["positions"] == 8 and info["attr_map"] == (4, 2)
    info = visualize.describe_architecture(
        load_cfg("", _tiny_arch_opts("MODEL.LAST_STRIDE", "2", "ATTR_RECOG_ON", "False")))
    assert (info["h"], info["w"]) == (2, 1)                                  # 64x32 / 32
    assert info["attr_mode"] is None and info["feat_dim"] == 512 and info["fusion"] == "TA"
    assert info["num_classes"] == 625                                        # MARS train ids


def test_architecture_without_attributes_draws(tmp_path):
    from config import load_cfg

    cfg = load_cfg("", _tiny_arch_opts("ATTR_RECOG_ON", "False", "MODEL.NECK", "no"))
    path = visualize.draw_architecture(visualize.describe_architecture(cfg, 5),
                                       str(tmp_path / "a.png"), "tiny")
    img = _assert_picture(path)
    colors = {tuple(c) for c in img.reshape(-1, 3).astype(int)}
    assert (0xdc, 0xef, 0xd6) not in colors                # no attribute streams drawn


def test_attribute_lines_mark_wrong_predictions():
    lines = visualize.attribute_lines(["a", "b", "c"], [1, 2], [2, 3, 2], pred=[1, 2, 0],
                                      truth=[1, 0, -1])
    body = [(t, c) for t, c in lines if t.startswith(("a ", "b ", "c "))]
    assert [c for _, c in body] == [(0, 0, 0), visualize.RED, (120, 120, 120)]
    assert "1 / 1" in body[0][0] and "2 / 0" in body[1][0] and "0 / ?" in body[2][0]
