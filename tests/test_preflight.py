"""Every config fault is caught by config validation, before anything is built: each bad value
names its key, and a run given one stops with exit 2 before any data, model or training step,
leaving no run folder. Also the messages of the optimizer, schedule and command-line errors.
"""

import pytest
import torch
import torch.nn as nn
from yacs.config import CfgNode

import main_baseline
from config import get_cfg
from config.defaults import _C
from config.validate import (
    CHOICES,
    POSITIVE_INTS,
    RANGES,
    SIZES,
    UNCHECKED,
    split_list_value,
)
from data.datasets import DATASETS, datasets_with_attributes
from engine.defaults import SYNTHETIC_FORMATS, load_cfg
from solver import make_center_optimizer, make_optimizer, make_scheduler
from tests.helpers import ROOT
from tools.synthetic import write as synthetic_write
from tools.synthetic.plan import FORMATS
from utils.errors import UserError

DEMO = str(ROOT / "configs" / "demo.yml")
# Keys holding lists of numbers, checked element by element.
LIST_KEYS = {*SIZES, "INPUT.PIXEL_MEAN", "INPUT.PIXEL_STD", "SOLVER.STEPS"}


def _leaves(node: CfgNode, prefix: str = "") -> dict:
    out = {}
    for k, v in node.items():
        if isinstance(v, CfgNode):
            out.update(_leaves(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def refused(opts: list[str], config_file: str | None = None) -> str:
    """The message of the UserError that validation raises for ``opts``."""
    with pytest.raises(UserError) as e:
        load_cfg(config_file, opts)
    return str(e.value)


# ------------------------------------------------------------------------------ the tables
def test_every_numeric_key_has_a_check():
    """A numeric key added to config/defaults.py needs a range here (or a reason it has none)."""
    numeric = {k for k, v in _leaves(_C).items()
               if (isinstance(v, (int, float)) and not isinstance(v, bool))
               or (isinstance(v, (list, tuple)) and v and all(
                   isinstance(x, (int, float)) and not isinstance(x, bool) for x in v))}
    checked = {*POSITIVE_INTS, *RANGES, *CHOICES, *UNCHECKED, *LIST_KEYS}
    assert numeric - checked == set()
    assert set(RANGES) & set(POSITIVE_INTS) == set()


def test_the_dataset_facts_agree_with_the_data_package():
    """The datasets with attributes (the size check) are read from the dataset registry; the
    layouts of the IF_MISSING check are the synthetic writer's."""
    assert set(datasets_with_attributes()) == {
        name for name, cls in DATASETS.items() if cls.attribute_file is not None}
    assert set(datasets_with_attributes()) == {"mars", "duke", "folder"}
    assert set(SYNTHETIC_FORMATS) == set(FORMATS)


@pytest.mark.parametrize("key, arg", [("DATASETS.SYNTHETIC.IDS", "ids"),
                                      ("DATASETS.SYNTHETIC.TRACKLETS", "tracklets"),
                                      ("DATASETS.SYNTHETIC.FRAMES", "frames")])
def test_synthetic_ranges_are_the_writers(key, arg):
    """The validated bounds are exactly those the synthetic writer accepts."""
    low, high, _, _ = RANGES[key]
    kwargs = {"fmt": "mars", "ids": 4, "tracklets": 2, "frames": 2, "size": (16, 8)}
    for value, ok in ((low - 1, False), (low, True), (high, True), (high + 1, False)):
        accepted = True
        try:
            synthetic_write._check_arguments(**{**kwargs, arg: value})
        except UserError:
            accepted = False
        assert accepted is ok, (key, value)
        if ok:
            load_cfg(None, [key, str(value)])
        else:
            assert key in refused([key, str(value)])
    with pytest.raises(UserError):
        synthetic_write._check_arguments(**{**kwargs, "size": (15, 8)})
    assert "DATASETS.SYNTHETIC.SIZE" in refused(["DATASETS.SYNTHETIC.SIZE", "[15, 8]"])
    load_cfg(None, ["DATASETS.SYNTHETIC.SIZE", "[16, 8]"])


@pytest.mark.parametrize("name", ["demo.yml", "mars_aitl.yml", "duke_aitl.yml",
                                  "softmax_triplet_tlaw.yml"])
def test_the_shipped_configs_validate(name):
    assert load_cfg(str(ROOT / "configs" / name)).is_frozen()


# ------------------------------------------------------------------------------ each key
def _outside(key: str) -> list:
    """Values just outside the range of a :data:`RANGES` key."""
    low, high, low_ok, _ = RANGES[key]
    if isinstance(_get(_C, key), int):
        return [low - 1] + ([high + 1] if high is not None else [])
    return [float(low) - 0.5 if low_ok else float(low)] + (
        [high + 0.5] if high is not None else [])


def _get(node, key):
    for part in key.split("."):
        node = node[part]
    return node


@pytest.mark.parametrize("key", sorted(RANGES))
def test_each_range_names_its_key(key):
    for value in _outside(key):
        msg = refused([key, repr(value)])
        assert f"Invalid value {value!r} for {key}" in msg and "it must be" in msg, msg


@pytest.mark.parametrize("key", sorted(RANGES))
def test_each_range_accepts_its_bounds(key):
    low, high, low_ok, _ = RANGES[key]
    for value in ([low] if low_ok else []) + ([high] if high is not None else []):
        assert _get(load_cfg(None, [key, str(value)]), key) == value


@pytest.mark.parametrize("key", POSITIVE_INTS)
def test_each_positive_integer_names_its_key(key):
    assert f"Invalid value 0 for {key}; it must be a positive integer" in refused([key, "0"])


@pytest.mark.parametrize("opts, expected", [
    (["SOLVER.BASE_LR", "-1"], "Invalid value -1.0 for SOLVER.BASE_LR (the learning rate); "
                               "it must be > 0."),
    (["SOLVER.BASE_LR", "0"], "SOLVER.BASE_LR"),
    (["SOLVER.CENTER_LR", "0"], "SOLVER.CENTER_LR"),
    (["SOLVER.BIAS_LR_FACTOR", "-2"], "SOLVER.BIAS_LR_FACTOR"),
    (["SOLVER.WEIGHT_DECAY", "-0.0005"], "SOLVER.WEIGHT_DECAY ("),
    (["SOLVER.WEIGHT_DECAY_BIAS", "-1"], "SOLVER.WEIGHT_DECAY_BIAS"),
    (["SOLVER.MARGIN", "-0.3"], "SOLVER.MARGIN"),
    (["SOLVER.AITL_MARGIN", "-0.1"], "SOLVER.AITL_MARGIN"),
    (["SOLVER.CENTER_LOSS_WEIGHT", "-1"], "SOLVER.CENTER_LOSS_WEIGHT"),
    (["INPUT.PROB", "1.5"], "INPUT.PROB (the probability of a horizontal flip); it must be a "
                            "number in [0, 1]"),
    (["INPUT.RE_PROB", "-0.1"], "INPUT.RE_PROB"),
    (["INPUT.PADDING", "-1"], "INPUT.PADDING"),
    (["SOLVER.GAMMA", "0"], "SOLVER.GAMMA"),
    (["SOLVER.WARMUP_FACTOR", "0"], "SOLVER.WARMUP_FACTOR"),
    (["SOLVER.WARMUP_FACTOR", "1.5"], "it must be a number in (0, 1]"),
    (["SOLVER.WARMUP_ITERS", "-1"], "SOLVER.WARMUP_ITERS"),
    (["SOLVER.MOMENTUM", "1.5"], "SOLVER.MOMENTUM"),
    (["RANDOM_SEED", "-1"], "RANDOM_SEED"),
    (["RANDOM_SEED", str(2**64)], "RANDOM_SEED"),
    (["SOLVER.STEPS", "[55, 30]"], "Invalid value [55, 30] for SOLVER.STEPS; give strictly "
                                   "increasing epochs"),
    (["SOLVER.STEPS", "[30, 30]"], "SOLVER.STEPS"),
    (["SOLVER.STEPS", "[0, 10]"], "SOLVER.STEPS"),
    (["SOLVER.STEPS", "[10.5]"], "SOLVER.STEPS"),
    (["INPUT.SIZE_TRAIN", "[256]", "INPUT.SIZE_TEST", "[256]"], "INPUT.SIZE_TRAIN; give "
                                                                "[height, width]"),
    (["INPUT.SIZE_TRAIN", "[0, 128]", "INPUT.SIZE_TEST", "[0, 128]"], "INPUT.SIZE_TRAIN"),
    (["INPUT.SIZE_TRAIN", "[256.5, 128]"], "INPUT.SIZE_TRAIN"),
    (["INPUT.SIZE_TEST", "[256, -1]"], "INPUT.SIZE_TEST"),
    (["INPUT.SIZE_TRAIN", "['a', 'b']"], "INPUT.SIZE_TRAIN"),
    (["INPUT.PIXEL_STD", "[0.2, 0.0, 0.2]"], "INPUT.PIXEL_STD; every standard deviation "
                                             "must be > 0"),
    (["INPUT.PIXEL_MEAN", "[0.5, 0.5]"], "INPUT.PIXEL_MEAN; give three numbers"),
    (["MODEL.LAST_STRIDE", "3"], "Invalid value 3 for MODEL.LAST_STRIDE; allowed values: 1, 2."),
    (["MODEL.DEVICE_ID", "gpu0"], "MODEL.DEVICE_ID"),
    (["DATASETS.SYNTHETIC.SEED", "-1"], "DATASETS.SYNTHETIC.SEED"),
    (["DATASETS.NAME", "duke", "DATASETS.SYNTHETIC.IDS", "4000", "DATASETS.SYNTHETIC.TRACKLETS",
      "3"], "DATASETS.SYNTHETIC.IDS x DATASETS.SYNTHETIC.TRACKLETS (4000 x 3)"),
    (["DATASETS.NAME", "prid", "DATASETS.SYNTHETIC.IF_MISSING", "True"],
     "DATASETS.SYNTHETIC.IF_MISSING writes the mars/duke/folder layouts only"),
    (["SOLVER.OPTIMIZER_NAME", "Rprop"], "SOLVER.OPTIMIZER_NAME Rprop has no weight decay"),
    (["SOLVER.AMP_BACKEND", "apex"], "SOLVER.AMP_BACKEND 'apex': NVIDIA apex removed apex.amp"),
    (["SOLVER.USE_CENTER_LOSS", "True"], "SOLVER.USE_CENTER_LOSS True needs "
                                         "MODEL.IF_WITH_CENTER 'yes'"),
    (["INPUT.SIZE_TRAIN", "[255, 127]"], "INPUT.SIZE_TEST [384, 128] differs from "
                                         "INPUT.SIZE_TRAIN [255, 127]"),
    (["MODEL.EXTRA_LOSSES", "['a', 'a']"], "Invalid value ['a', 'a'] for MODEL.EXTRA_LOSSES; "
                                           "give a list of distinct names"),
    (["MODEL.EXTRA_LOSSES", "[3]"], "Invalid value [3] for MODEL.EXTRA_LOSSES"),
    (["MODEL.EXTRA_LOSSES", "a"], "MODEL.EXTRA_LOSSES in the command line expects a list"),
    (["MODEL.EXTRA_LOSS_WEIGHTS", "[-0.5]"], "Invalid value [-0.5] for "
                                             "MODEL.EXTRA_LOSS_WEIGHTS; every weight must be a "
                                             "number >= 0."),
    (["MODEL.EXTRA_LOSS_WEIGHTS", "[True]"], "MODEL.EXTRA_LOSS_WEIGHTS"),
    (["MODEL.EXTRA_LOSS_WEIGHTS", "[1.0]"], "MODEL.EXTRA_LOSS_WEIGHTS [1.0] (length 1) must "
                                            "give one weight per name of MODEL.EXTRA_LOSSES [] "
                                            "(length 0), or be [] for 1.0 each."),
])
def test_bad_value_names_the_key(opts, expected):
    assert expected in refused(opts)


def test_the_good_neighbours_of_the_bad_values_validate():
    """The consistent variants of the refused combinations are accepted."""
    load_cfg(None, ["SOLVER.OPTIMIZER_NAME", "Rprop", "SOLVER.WEIGHT_DECAY", "0"])
    load_cfg(None, ["SOLVER.AMP_BACKEND", "apex", "SOLVER.FP_16", "False"])
    load_cfg(None, ["SOLVER.USE_CENTER_LOSS", "True", "MODEL.IF_WITH_CENTER", "yes",
                    "MODEL.METRIC_LOSS_TYPE", "triplet_center"])
    load_cfg(None, ["SOLVER.STEPS", "[]"])
    load_cfg(None, ["MODEL.DEVICE_ID", "1,0"])


def test_a_nan_in_a_yml_file_names_the_key(tmp_path):
    f = tmp_path / "nan.yml"
    f.write_text("SOLVER:\n  BASE_LR: .nan\n")
    assert load_cfg(str(f), ["SOLVER.BASE_LR", "0.1"]).SOLVER.BASE_LR == 0.1
    assert "Invalid value nan for SOLVER.BASE_LR" in refused([], str(f))


@pytest.mark.parametrize("name", datasets_with_attributes())
def test_train_and_test_sizes_must_agree_with_attributes(name):
    """The check that stopped a run at its first evaluation, now in validation."""
    opts = ["DATASETS.NAME", name, "INPUT.SIZE_TRAIN", "[255,127]", "INPUT.SIZE_TEST", "[64,32]"]
    msg = refused(opts)
    assert "Use the same INPUT.SIZE_TEST as INPUT.SIZE_TRAIN (INPUT.SIZE_TEST '[255,127]')" in msg
    assert "or set ATTR_RECOG_ON False" in msg
    assert load_cfg(None, [*opts, "ATTR_RECOG_ON", "False"]).INPUT.SIZE_TEST == [64, 32]


@pytest.mark.parametrize("name", sorted(set(DATASETS) - set(datasets_with_attributes())))
def test_sizes_may_differ_without_attributes(name):
    cfg = load_cfg(None, ["DATASETS.NAME", name, "INPUT.SIZE_TRAIN", "[255,127]"])
    assert cfg.INPUT.SIZE_TEST == [384, 128]


# ------------------------------------------------------------------- through the command
@pytest.fixture
def no_build(monkeypatch):
    """Make building the data a test failure: validation must stop the run before it."""
    def built(*args, **kwargs):
        raise AssertionError("the run got past config validation")

    monkeypatch.setattr(main_baseline, "make_data_loaders", built)


def demo_argv(tiny_mars, out, *extra: str) -> list[str]:
    """configs/demo.yml on the tiny synthetic MARS folder, runs under ``out``."""
    return ["--config_file", DEMO, "DATASETS.ROOT_DIR", str(tiny_mars),
            "DATASETS.SYNTHETIC.IF_MISSING", "False", "DATALOADER.NUM_WORKERS", "0",
            "OUTPUT_DIR", str(out), *extra]


def test_the_demo_run_reaches_the_data_without_a_fault(tiny_mars, tmp_path, monkeypatch):
    """The control of the next test: the same command without a fault gets past validation."""
    class Reached(Exception):
        pass

    def reached(*args, **kwargs):
        raise Reached

    monkeypatch.setattr(main_baseline, "make_data_loaders", reached)
    with pytest.raises(Reached):
        main_baseline.main(demo_argv(tiny_mars, tmp_path / "out"))


@pytest.mark.parametrize("extra, expected", [
    (("INPUT.SIZE_TRAIN", "[255,127]"), "Use the same INPUT.SIZE_TEST as INPUT.SIZE_TRAIN"),
    (("SOLVER.BASE_LR", "-1"), "Invalid value -1.0 for SOLVER.BASE_LR"),
    (("SOLVER.STEPS", "[20, 20]"), "SOLVER.STEPS"),
    (("SOLVER.WARMUP_FACTOR", "0"), "SOLVER.WARMUP_FACTOR"),
    (("SOLVER.GAMMA", "0"), "SOLVER.GAMMA"),
    (("SOLVER.MARGIN", "-0.3"), "SOLVER.MARGIN"),
    (("INPUT.PROB", "2"), "INPUT.PROB"),
    (("RANDOM_SEED", "-1"), "RANDOM_SEED"),
    (("MODEL.LAST_STRIDE", "3"), "MODEL.LAST_STRIDE"),
    (("SOLVER.USE_CENTER_LOSS", "True"), "SOLVER.USE_CENTER_LOSS"),
    (("SOLVER.OPTIMIZER_NAME", "Rprop"), "SOLVER.OPTIMIZER_NAME Rprop has no weight decay"),
    (("SOLVER.FP_16", "True", "SOLVER.AMP_BACKEND", "apex"), "SOLVER.AMP_BACKEND"),
    (("INPUT.SIZE_TRAIN", "[255,", "127]"), "quote it, e.g. INPUT.SIZE_TRAIN '[255,127]'"),
])
def test_a_run_with_a_fault_stops_before_any_work(tiny_mars, tmp_path, capsys, no_build,
                                                  extra, expected):
    out = tmp_path / "out"
    code = main_baseline.main(demo_argv(tiny_mars, out, *extra))
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and err.count("error: ") == 1 and "Traceback" not in err
    assert expected in err
    assert not out.exists()                    # no run folder, not even OUTPUT_DIR


def test_a_negative_learning_rate_blames_the_learning_rate(tiny_mars, tmp_path, capsys,
                                                           no_build):
    assert main_baseline.main(demo_argv(tiny_mars, tmp_path, "SOLVER.BASE_LR", "-1")) == 2
    err = capsys.readouterr().err
    assert "SOLVER.BASE_LR" in err and "OPTIMIZER_NAME" not in err


# ------------------------------------------------------------------- the command line
def test_a_list_split_by_the_shell_says_to_quote_it(tiny_mars, tmp_path, capsys, no_build):
    # what `... INPUT.SIZE_TRAIN [255, 127]` (unquoted) gives the program
    assert main_baseline.main(demo_argv(tiny_mars, tmp_path, "INPUT.SIZE_TRAIN", "[255,",
                                        "127]")) == 2
    err = capsys.readouterr().err
    assert "INPUT.SIZE_TRAIN reached the program as several arguments" in err
    assert "quote it, e.g. INPUT.SIZE_TRAIN '[255,127]'" in err
    # the same with an even count (two split lists) is told the same, not "Unknown key '127]'"
    msg = refused(["INPUT.SIZE_TRAIN", "[255,", "127]", "INPUT.SIZE_TEST", "(255,", "127)"])
    assert "INPUT.SIZE_TRAIN '[255,127]'" in msg
    assert split_list_value(["MODEL.NAME", "resnet18", "SOLVER.STEPS", "[30", ",", "55]"]) == (
        "SOLVER.STEPS", "[30,55]")
    assert split_list_value(["INPUT.SIZE_TRAIN", "[255,127]", "DATASETS.ROOT_DIR", "[x"]) is None


def test_an_odd_number_of_overrides_says_what_may_be_missing():
    msg = refused(["SOLVER.MAX_EPOCHS", "3", "SOLVER.BASE_LR"])
    assert "got an odd number (3)" in msg and "Is a KEY or a VALUE missing?" in msg
    assert "must be quoted as one argument, e.g. INPUT.SIZE_TRAIN '[256, 128]'" in msg


# ------------------------------------------------------------------- optimizer, schedule
def small_model() -> nn.Module:
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))


@pytest.mark.parametrize("key, value, name", [
    ("BASE_LR", -1.0, "Adam"),
    ("BIAS_LR_FACTOR", -2.0, "Adam"),          # torch checks only the default lr: silent before
    ("WEIGHT_DECAY", -0.1, "AdamW"),           # ... and only the default weight decay
    ("WEIGHT_DECAY_BIAS", -0.1, "Adam"),
    ("MOMENTUM", -0.5, "SGD"),
])
def test_optimizer_errors_name_the_setting_not_the_optimizer(key, value, name):
    """make_optimizer on a config that skipped validation (a library caller)."""
    cfg = get_cfg()
    cfg.SOLVER.OPTIMIZER_NAME = name
    cfg.SOLVER[key] = value
    with pytest.raises(UserError) as e:
        make_optimizer(cfg, small_model())
    msg = str(e.value)
    assert msg.startswith(f"SOLVER.{key} {value!r}") or f", SOLVER.{key} {value!r}" in msg, msg
    assert f"refused by torch.optim.{name}" in msg and "SOLVER.OPTIMIZER_NAME" not in msg


def test_torch_optim_constructor_errors_name_the_key(monkeypatch):
    class Strict(torch.optim.Adam):
        def __init__(self, params, lr=1e-3, weight_decay=0.0, fused=None):
            raise ValueError(f"Invalid learning rate: {lr}")

    monkeypatch.setattr(torch.optim, "Adam", Strict)
    with pytest.raises(UserError, match=r"^SOLVER\.BASE_LR 0\.0003: refused by torch\.optim\."
                                        r"Adam \(Invalid learning rate: 0\.0003\)\. Fix "
                                        r"SOLVER\.BASE_LR\.$"):
        make_optimizer(get_cfg(), small_model())


@pytest.mark.parametrize("key, value", [("GAMMA", 0.0), ("WARMUP_FACTOR", -1.0),
                                        ("WARMUP_ITERS", -3), ("STEPS", (30, 30)),
                                        ("WARMUP_METHOD", "cosine")])
def test_schedule_errors_name_the_one_key(key, value):
    cfg = get_cfg()
    cfg.SOLVER[key] = value
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(UserError) as e:
        make_scheduler(cfg, opt)
    assert str(e.value).startswith(f"Invalid value {value!r} for SOLVER.{key}: "), str(e.value)


def test_center_optimizer_names_its_learning_rate():
    cfg = get_cfg()
    cfg.SOLVER.CENTER_LR = -0.5
    criterion = nn.Module()
    criterion.center_loss = nn.Linear(2, 2)
    with pytest.raises(UserError, match=r"Invalid value -0\.5 for SOLVER\.CENTER_LR"):
        make_center_optimizer(cfg, criterion)
