"""Configuration: the original key set and defaults, precedence, errors, run set-up."""

import subprocess
import sys

import pytest
import yaml

from config import cfg as global_cfg
from config import get_cfg
from engine.defaults import default_setup, load_cfg
from tests.helpers import ROOT
from utils.errors import UserError

# Every key of the original with its default (EVALUATE_ONLY becomes False; docs/behaviour.md).
ORIGINAL_DEFAULTS = {
    "MODEL.DEVICE": "cuda", "MODEL.DEVICE_ID": "0", "MODEL.ARCH": "video_baseline",
    "MODEL.NAME": "resnet50", "MODEL.SYN_BN": True, "MODEL.LAST_STRIDE": 1,
    "MODEL.PRETRAIN_PATH": "", "MODEL.PRETRAIN_CHOICE": "imagenet",
    "MODEL.FUSION_METHOD": "ATTR_TA", "MODEL.NECK": "bnneck", "MODEL.IF_WITH_CENTER": "no",
    "MODEL.METRIC_LOSS_TYPE": "triplet", "MODEL.IF_LABELSMOOTH": "on",
    "INPUT.SIZE_TRAIN": [384, 128], "INPUT.SIZE_TEST": [384, 128], "INPUT.PROB": 0.5,
    "INPUT.RE_PROB": 0.5, "INPUT.PIXEL_MEAN": [0.485, 0.456, 0.406],
    "INPUT.PIXEL_STD": [0.229, 0.224, 0.225], "INPUT.PADDING": 10,
    "DATASETS.ROOT_DIR": "", "DATASETS.NAME": "mars", "DATASETS.SEQ_LEN": 4,
    "DATASETS.TRAIN_SAMPLE_METHOD": "random", "DATASETS.TEST_SAMPLE_METHOD": "dense",
    "DATASETS.TEST_MAX_SEQ_NUM": 200, "DATASETS.ATTRIBUTE_LOSS": "bce",
    "DATALOADER.NUM_WORKERS": 8, "DATALOADER.SAMPLER": "softmax", "DATALOADER.NUM_INSTANCE": 16,
    "SOLVER.OPTIMIZER_NAME": "Adam", "SOLVER.MAX_EPOCHS": 50, "SOLVER.BASE_LR": 3e-4,
    "SOLVER.BIAS_LR_FACTOR": 2, "SOLVER.MOMENTUM": 0.9, "SOLVER.MARGIN": 0.3,
    "SOLVER.CLUSTER_MARGIN": 0.3, "SOLVER.CENTER_ON": 0, "SOLVER.CENTER_LR": 0.5,
    "SOLVER.CENTER_LOSS_WEIGHT": 0.0005, "SOLVER.RANGE_K": 2, "SOLVER.RANGE_MARGIN": 0.3,
    "SOLVER.RANGE_ALPHA": 0, "SOLVER.RANGE_BETA": 1, "SOLVER.RANGE_LOSS_WEIGHT": 1,
    "SOLVER.WEIGHT_DECAY": 0.0005, "SOLVER.WEIGHT_DECAY_BIAS": 0.0, "SOLVER.GAMMA": 0.1,
    "SOLVER.STEPS": (30, 55), "SOLVER.WARMUP_FACTOR": 1.0 / 3, "SOLVER.WARMUP_ITERS": 500,
    "SOLVER.WARMUP_METHOD": "linear", "SOLVER.CHECKPOINT_PERIOD": 50, "SOLVER.LOG_PERIOD": 100,
    "SOLVER.EVAL_PERIOD": 50, "SOLVER.FP_16": True, "SOLVER.SEQS_PER_BATCH": 64,
    "TEST.SEQS_PER_BATCH": 128, "TEST.RE_RANKING": "no", "TEST.WEIGHT": "",
    "TEST.NECK_FEAT": "after", "TEST.FEAT_NORM": "yes", "TEST.TEMPORAL_POOL_METHOD": "avg",
    "OUTPUT_DIR": "", "RANDOM_SEED": 999, "EVALUATE_ONLY": False, "DISTANCE": "cosine",
    "ATTR_RECOG_ON": True,
}

# What the paper's yml overrides (docs/behaviour.md#the-papers-run).
PAPER_OVERRIDES = {
    "MODEL.PRETRAIN_CHOICE": "imagenet", "MODEL.METRIC_LOSS_TYPE": "triplet_center",
    "MODEL.IF_WITH_CENTER": "yes", "INPUT.SIZE_TRAIN": [256, 128], "INPUT.SIZE_TEST": [256, 128],
    "DATASETS.SEQ_LEN": 4, "DATALOADER.SAMPLER": "softmax_triplet", "DATALOADER.NUM_INSTANCE": 4,
    "DATALOADER.NUM_WORKERS": 4, "SOLVER.OPTIMIZER_NAME": "Adam", "SOLVER.MAX_EPOCHS": 500,
    "SOLVER.BASE_LR": 0.00035, "SOLVER.BIAS_LR_FACTOR": 1, "SOLVER.WEIGHT_DECAY": 0.0005,
    "SOLVER.WEIGHT_DECAY_BIAS": 0.0005, "SOLVER.SEQS_PER_BATCH": 32,
    "SOLVER.STEPS": [70, 140, 210, 310, 410], "SOLVER.GAMMA": 0.3, "SOLVER.WARMUP_FACTOR": 0.01,
    "SOLVER.WARMUP_ITERS": 10, "SOLVER.WARMUP_METHOD": "linear", "SOLVER.CHECKPOINT_PERIOD": 40,
    "SOLVER.LOG_PERIOD": 20, "SOLVER.EVAL_PERIOD": 40, "TEST.SEQS_PER_BATCH": 1,
    "TEST.NECK_FEAT": "after", "TEST.FEAT_NORM": "yes",
}


def _get(c, key):
    for part in key.split("."):
        c = c[part]
    return c


def _norm(v):
    return list(v) if isinstance(v, tuple) else v


@pytest.mark.parametrize("key", sorted(ORIGINAL_DEFAULTS))
def test_original_key_and_default(key):
    assert _norm(_get(get_cfg(), key)) == pytest.approx(_norm(ORIGINAL_DEFAULTS[key]))


def test_every_key_has_a_comment():
    lines = (ROOT / "config" / "defaults.py").read_text().splitlines()
    for i, line in enumerate(lines):
        if line.startswith("_C.") and "= CN()" not in line:
            assert lines[i - 1].lstrip().startswith("#"), f"no comment above: {line}"


def test_get_cfg_is_a_fresh_clone():
    c = get_cfg()
    c.SOLVER.BASE_LR = 123.0
    assert global_cfg.SOLVER.BASE_LR == 3e-4
    assert get_cfg().SOLVER.BASE_LR == 3e-4


@pytest.mark.parametrize("name", ["softmax_triplet_tlaw.yml", "mars_aitl.yml", "duke_aitl.yml"])
def test_paper_configs(name):
    c = load_cfg(str(ROOT / "configs" / name))
    for key, value in PAPER_OVERRIDES.items():
        assert _norm(_get(c, key)) == pytest.approx(_norm(value)), key
    assert c.is_frozen()
    expected_root = {"duke_aitl.yml": "data/duke"}.get(name, "data/mars")
    assert c.DATASETS.ROOT_DIR == expected_root


def test_precedence_defaults_file_command_line(tmp_path):
    f = tmp_path / "x.yml"
    f.write_text("SOLVER:\n  BASE_LR: 0.01\n  MAX_EPOCHS: 7\n")
    c = load_cfg(str(f), ["SOLVER.MAX_EPOCHS", "9"])
    assert c.SOLVER.BASE_LR == 0.01          # file over defaults
    assert c.SOLVER.MAX_EPOCHS == 9          # command line over file
    assert c.SOLVER.GAMMA == 0.1             # defaults otherwise


def test_unknown_key_names_closest(tmp_path):
    with pytest.raises(UserError, match=r"SOLVER\.BASE_LRR.*SOLVER\.BASE_LR"):
        load_cfg(None, ["SOLVER.BASE_LRR", "0.1"])
    f = tmp_path / "typo.yml"
    f.write_text("MODEL:\n  FUSION_METHD: TA\n")
    with pytest.raises(UserError, match=r"MODEL\.FUSION_METHD.*typo\.yml.*MODEL\.FUSION_METHOD"):
        load_cfg(str(f))


def test_bad_enumerated_value_lists_allowed():
    with pytest.raises(UserError, match=r"'ATTR_TAA'.*MODEL\.FUSION_METHOD.*baseline, TA, ATTR_TA"):
        load_cfg(None, ["MODEL.FUSION_METHOD", "ATTR_TAA"])
    with pytest.raises(UserError, match=r"DISTANCE.*cosine, euclid"):
        load_cfg(None, ["DISTANCE", "l2"])
    with pytest.raises(UserError, match=r"'adam'.*SOLVER\.OPTIMIZER_NAME.*Adam, AdamW"):
        load_cfg(None, ["SOLVER.OPTIMIZER_NAME", "adam"])


def test_value_types_are_checked_and_coerced(tmp_path):
    with pytest.raises(UserError, match=r"SOLVER\.BASE_LR.*float.*'fast'"):
        load_cfg(None, ["SOLVER.BASE_LR", "fast"])
    with pytest.raises(UserError, match=r"MODEL\.FUSION_METHOD.*section|MODEL.*section"):
        load_cfg(None, ["MODEL", "ATTR_TA"])
    f = tmp_path / "original_style.yml"
    # the original's configs write DEVICE_ID: ('0') and tuples as strings
    f.write_text("MODEL:\n  DEVICE_ID: ('0')\nINPUT:\n  SIZE_TRAIN: (128, 64)\n"
                 "  SIZE_TEST: (128, 64)\nSOLVER:\n  BASE_LR: 1\n")
    c = load_cfg(str(f), ["MODEL.DEVICE_ID", "1"])
    assert c.MODEL.DEVICE_ID == "1" and c.INPUT.SIZE_TRAIN == [128, 64]
    assert c.SOLVER.BASE_LR == 1.0 and isinstance(c.SOLVER.BASE_LR, float)


def test_batch_must_be_multiple_of_instances():
    with pytest.raises(UserError, match=r"SEQS_PER_BATCH 30 / 1 process\(es\)\) must be a "
                                        r"multiple of DATALOADER.NUM_INSTANCE \(4\)"):
        load_cfg(None, ["DATALOADER.SAMPLER", "softmax_triplet", "DATALOADER.NUM_INSTANCE", "4",
                        "SOLVER.SEQS_PER_BATCH", "30"])


def test_missing_config_file():
    with pytest.raises(UserError, match=r"Config file not found: 'nope/none\.yml'"):
        load_cfg("nope/none.yml")


def test_setup_writes_run_folder_and_config_round_trip(tmp_path):
    out = tmp_path / "runs"
    c, run_dir = default_setup(None, ["OUTPUT_DIR", str(out), "SOLVER.MAX_EPOCHS", "3",
                                      "INPUT.SIZE_TRAIN", "[64, 32]", "INPUT.SIZE_TEST",
                                      "[64, 32]"])
    files = {p.name for p in (out).glob("*/*")}
    assert {"config.yaml", "env.txt", "log.txt"} <= files
    env = open(f"{run_dir}/env.txt").read()
    assert "torch:" in env and "git revision:" in env
    again = load_cfg(f"{run_dir}/config.yaml")
    assert again == c
    assert yaml.safe_load(open(f"{run_dir}/config.yaml"))["SOLVER"]["MAX_EPOCHS"] == 3
    _, second = default_setup(None, ["OUTPUT_DIR", str(out)])
    assert second != run_dir                  # two runs never share a folder


def _run_main(*args):
    return subprocess.run([sys.executable, "main_baseline.py", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_cli_user_errors_exit_nonzero_without_traceback():
    r = _run_main("--config_file", "configs/missing.yml")
    assert r.returncode == 2 and "configs/missing.yml" in r.stderr
    assert "Traceback" not in r.stderr
    r = _run_main("--config_file", "configs/mars_aitl.yml", "MODEL.NECK", "bneck",
                  "OUTPUT_DIR", "/nonexistent-unused")
    assert r.returncode == 2 and "MODEL.NECK" in r.stderr and "bnneck" in r.stderr
    assert "Traceback" not in r.stderr


def test_cli_help_documents_options():
    r = _run_main("--help")
    assert r.returncode == 0
    for option in ("--config_file", "--eval-only", "--resume", "KEY VALUE"):
        assert option in r.stdout


def test_configs_inherit_with_base(tmp_path):
    """_BASE_ merges the named file (relative to the yml, recursively) under the file's keys."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "root.yml").write_text("SOLVER:\n  BASE_LR: 0.01\n  MAX_EPOCHS: 7\n"
                                       "MODEL:\n  NAME: resnet18\n")
    (tmp_path / "sub" / "mid.yml").write_text("_BASE_: ../root.yml\nSOLVER:\n  MAX_EPOCHS: 8\n")
    (tmp_path / "sub" / "leaf.yml").write_text("_BASE_: mid.yml\nSOLVER:\n  GAMMA: 0.5\n")
    c = load_cfg(str(tmp_path / "sub" / "leaf.yml"), ["SOLVER.BASE_LR", "0.02"])
    assert (c.MODEL.NAME, c.SOLVER.MAX_EPOCHS, c.SOLVER.GAMMA, c.SOLVER.BASE_LR) == (
        "resnet18", 8, 0.5, 0.02)
    assert "_BASE_" not in c.dump()


def test_base_errors_name_the_file(tmp_path):
    (tmp_path / "a.yml").write_text("_BASE_: b.yml\n")
    (tmp_path / "b.yml").write_text("_BASE_: a.yml\n")
    with pytest.raises(UserError, match=r"leads back"):
        load_cfg(str(tmp_path / "a.yml"))
    (tmp_path / "c.yml").write_text("_BASE_: missing.yml\n")
    with pytest.raises(UserError, match=r"not found.*missing\.yml"):
        load_cfg(str(tmp_path / "c.yml"))
    (tmp_path / "d.yml").write_text("_BASE_: 3\n")
    with pytest.raises(UserError, match=r"_BASE_ in .*d\.yml.*path"):
        load_cfg(str(tmp_path / "d.yml"))


@pytest.mark.parametrize("name", ["mars_aitl.yml", "duke_aitl.yml"])
def test_dataset_configs_state_only_what_differs_from_the_paper_run(name, tmp_path):
    """They extend softmax_triplet_tlaw.yml, and the saved config.yaml loads back alone."""
    import yaml

    own = yaml.safe_load((ROOT / "configs" / name).read_text())
    assert own.pop("_BASE_") == "softmax_triplet_tlaw.yml"
    assert set(own) <= {"DATASETS", "OUTPUT_DIR"}
    c = load_cfg(str(ROOT / "configs" / name))
    saved = tmp_path / "config.yaml"
    saved.write_text(c.dump())
    again = load_cfg(str(saved))
    assert again.dump() == c.dump()


def test_messages_of_common_mistakes(tmp_path):
    """A lowercase key names the real one, a folder is called a folder, the default shown is
    config/defaults.py's, a scalar for a list shows the list form, 2.0 is an integer."""
    lower = tmp_path / "lower.yml"
    lower.write_text("max_epochs: 2\n")
    with pytest.raises(UserError, match=r"Unknown config key 'max_epochs'.*Did you mean "
                                        r"SOLVER\.MAX_EPOCHS\?"):
        load_cfg(str(lower))
    with pytest.raises(UserError, match=r"Config file '.*configs' is a folder"):
        load_cfg(str(ROOT / "configs"))
    base = tmp_path / "base.yml"
    base.write_text("SOLVER:\n  MAX_EPOCHS: 30\n")
    bad = tmp_path / "bad.yml"
    bad.write_text("_BASE_: base.yml\nSOLVER:\n  MAX_EPOCHS: fast\n")
    with pytest.raises(UserError, match=r"SOLVER\.MAX_EPOCHS .* expects an int \(default 50\); "
                                        r"got 'fast'"):
        load_cfg(str(bad))
    with pytest.raises(UserError, match=r"SOLVER\.STEPS .* expects a list, e\.g\. \[20\]"):
        load_cfg(None, ["SOLVER.STEPS", "20"])
    whole = tmp_path / "whole.yml"
    whole.write_text("SOLVER:\n  MAX_EPOCHS: 2.0\n")
    c = load_cfg(str(whole))
    assert c.SOLVER.MAX_EPOCHS == 2 and isinstance(c.SOLVER.MAX_EPOCHS, int)
    with pytest.raises(UserError, match=r"SOLVER\.MAX_EPOCHS .* expects an int"):
        load_cfg(None, ["SOLVER.MAX_EPOCHS", "2.5"])
