"""Load, merge and validate configurations with errors that name the key and the fix."""

from __future__ import annotations

import ast
import difflib
import os

import torch
import yaml
from yacs.config import CfgNode as CN

from config.defaults import _C
from utils.errors import UserError

BACKBONES = (
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
    "se_resnet50", "se_resnet101", "se_resnet152", "se_resnext50", "se_resnext101",
    "senet154", "resnet50_ibn_a",
)

# Enumerated keys and their allowed values.
CHOICES: dict[str, tuple] = {
    "MODEL.DEVICE": ("cuda", "cpu"),
    "MODEL.ARCH": ("video_baseline",),
    "MODEL.NAME": BACKBONES,
    "MODEL.PRETRAIN_CHOICE": ("imagenet", "self", "none"),
    "MODEL.FUSION_METHOD": ("baseline", "TA", "ATTR_TA"),
    "MODEL.NECK": ("bnneck", "no"),
    "MODEL.IF_WITH_CENTER": ("yes", "no"),
    "MODEL.METRIC_LOSS_TYPE": ("triplet", "center", "triplet_center"),
    "MODEL.IF_LABELSMOOTH": ("on", "off"),
    "DATASETS.NAME": ("mars", "duke", "ilidsvid", "prid", "folder"),
    "DATASETS.TRAIN_SAMPLE_METHOD": ("random", "evenly"),
    "DATASETS.TEST_SAMPLE_METHOD": ("dense", "evenly", "random"),
    "DATASETS.ATTRIBUTE_LOSS": ("bce", "mce"),
    "DATALOADER.SAMPLER": ("softmax", "triplet", "softmax_triplet"),
    "SOLVER.WARMUP_METHOD": ("linear", "constant"),
    "SOLVER.AMP_DTYPE": ("float16", "bfloat16"),
    "SOLVER.AMP_BACKEND": ("native", "apex"),
    "TEST.RE_RANKING": ("yes", "no"),
    "TEST.NECK_FEAT": ("before", "after"),
    "TEST.FEAT_NORM": ("yes", "no"),
    "TEST.TEMPORAL_POOL_METHOD": ("avg", "max"),
    "MODEL.CHANNELS_LAST": (True, False, "auto"),
    "DISTANCE": ("cosine", "euclid"),
}

# torch.optim classes that cannot train this model: LBFGS needs a closure and one parameter
# group, SparseAdam sparse gradients, Muon 2-D parameters only.
_UNSUITABLE_OPTIMIZERS = {"LBFGS", "SparseAdam", "Muon"}


def available_optimizers() -> list[str]:
    """Names of the torch.optim classes that SOLVER.OPTIMIZER_NAME may take."""
    return sorted(
        name for name, obj in vars(torch.optim).items()
        if isinstance(obj, type) and issubclass(obj, torch.optim.Optimizer)
        and obj is not torch.optim.Optimizer and name not in _UNSUITABLE_OPTIMIZERS)


# Keys that must be positive integers.
POSITIVE_INTS = (
    "DATASETS.SEQ_LEN", "DATASETS.TEST_MAX_SEQ_NUM", "DATALOADER.NUM_INSTANCE",
    "SOLVER.MAX_EPOCHS", "SOLVER.CHECKPOINT_PERIOD", "SOLVER.LOG_PERIOD", "SOLVER.EVAL_PERIOD",
    "SOLVER.SEQS_PER_BATCH", "DATALOADER.READ_RETRIES",
)


def _all_keys(node: CN, prefix: str = "") -> list[str]:
    keys = []
    for k, v in node.items():
        full = f"{prefix}{k}"
        keys.append(full)
        if isinstance(v, CN):
            keys.extend(_all_keys(v, full + "."))
    return keys


def _get(cfg: CN, dotted: str):
    node = cfg
    for part in dotted.split("."):
        node = node[part]
    return node


def _suggest(key: str, valid: list[str]) -> str:
    """" Did you mean ...?" for an unknown key: the same key in capitals or in another
    section (``max_epochs`` -> SOLVER.MAX_EPOCHS), else the closest spellings."""
    last = key.rsplit(".", 1)[-1].upper()
    close = [v for v in valid if v.upper() == key.upper() or v.rsplit(".", 1)[-1] == last]
    close = close or difflib.get_close_matches(key, valid, n=3, cutoff=0.5)
    return f" Did you mean {', '.join(close)}?" if close else ""


def _check_keys(cfg: CN, other: dict, source: str, prefix: str = "") -> None:
    """Raise a UserError for the first key of ``other`` that ``cfg`` does not have."""
    valid = _all_keys(cfg)
    for k, v in other.items():
        full = f"{prefix}{k}"
        if full not in valid:
            raise UserError(f"Unknown config key '{full}' in {source}.{_suggest(full, valid)}")
        if isinstance(v, dict):
            _check_keys(cfg, v, source, full + ".")


# Keys that take True, False or "auto" (a yml bool, or True/False/auto in any case).
AUTO_BOOLS = ("MODEL.CHANNELS_LAST",)


def _auto_bool(value, key: str, source: str) -> bool | str:
    """True, False or "auto" from a yml or command-line value of an :data:`AUTO_BOOLS` key."""
    word = value.strip().lower() if isinstance(value, str) else None
    if isinstance(value, bool) or word in ("true", "false"):
        return value if isinstance(value, bool) else word == "true"
    if word == "auto":
        return "auto"
    raise UserError(f"Config key {key} in {source} takes True, False or auto; got {value!r}.")


def _coerce(value, default, key: str, source: str):
    """Convert ``value`` (from yaml or the command line) to the type of ``default``.

    Strings are parsed as Python literals the way yacs does (``"(256, 128)"`` -> tuple), except
    for string-typed keys, where a literal only counts when it is itself a string (the
    original's ``DEVICE_ID: ('0')``); unquoted numbers for string keys (``DEVICE_ID: 0``) are
    accepted. Lists and tuples are interchangeable and ints are accepted for floats.
    :data:`AUTO_BOOLS` keys take a bool or "auto".
    """
    if key in AUTO_BOOLS:
        return _auto_bool(value, key, source)
    if isinstance(value, str):
        try:
            parsed = ast.literal_eval(value)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            parsed = value
        if isinstance(default, str) and not isinstance(parsed, str):
            parsed = value
        value = parsed
    if default is None or value is None:
        return value
    if isinstance(default, str):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
    elif isinstance(default, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif isinstance(default, (list, tuple)):
        if isinstance(value, (list, tuple)):
            return type(default)(value)
        raise UserError(f"Config key {key} in {source} expects a list, e.g. [{value!r}] "
                        f"(default {_default_of(key)!r}); got {value!r}.")
    elif isinstance(default, int) and isinstance(value, float) and value.is_integer():
        return int(value)                                 # MAX_EPOCHS: 2.0
    if type(value) is type(default):
        return value
    kind = type(default).__name__
    article = "an" if kind[0] in "aeiou" else "a"
    raise UserError(f"Config key {key} in {source} expects {article} {kind} "
                    f"(default {_default_of(key)!r}); got {value!r}.")


def _default_of(key: str):
    """The value of ``key`` in config/defaults.py (not the value a yml merged before)."""
    node = _C
    for part in key.split("."):
        node = node[part]
    return node


def _merge(cfg: CN, other: dict, source: str, prefix: str = "") -> None:
    for k, v in other.items():
        full = f"{prefix}{k}"
        if isinstance(cfg[k], CN):
            if not isinstance(v, dict):
                raise UserError(f"Config key {full} in {source} is a section; give its keys, "
                                f"not the value {v!r}.")
            _merge(cfg[k], v, source, full + ".")
        else:
            cfg[k] = _coerce(v, cfg[k], full, source)


BASE_KEY = "_BASE_"


def _read_yaml(path: str) -> dict:
    if os.path.isdir(path):
        raise UserError(f"Config file '{path}' is a folder: pass one of its yml files to "
                        "--config_file (e.g. configs/mars_aitl.yml).")
    if not os.path.isfile(path):
        raise UserError(f"Config file not found: '{path}'. Pass an existing file to --config_file "
                        "(the shipped ones are in configs/).")
    with open(path, encoding="utf-8") as f:
        try:
            loaded = yaml.safe_load(f) or {}
        except yaml.YAMLError as e:
            raise UserError(f"Config file '{path}' is not valid YAML: {e}") from None
    if not isinstance(loaded, dict):
        raise UserError(f"Config file '{path}' must hold a mapping of config sections.")
    return loaded


def merge_config_file(cfg: CN, path: str, _chain: tuple[str, ...] = ()) -> None:
    """Merge a yml file into ``cfg`` (mutable), naming the file and key on any error.

    A file may extend another: ``_BASE_: other.yml`` (relative to the file's folder) merges
    ``other.yml`` (and its own bases) first, then the file's keys over it.
    """
    loaded = _read_yaml(path)
    base = loaded.pop(BASE_KEY, None)
    if base is not None:
        if not isinstance(base, str) or not base:
            raise UserError(f"{BASE_KEY} in '{path}' must be the path of the yml file it "
                            f"extends, got {base!r}.")
        base_path = os.path.normpath(os.path.join(os.path.dirname(path), base))
        chain = (*_chain, os.path.realpath(path))
        if os.path.realpath(base_path) in chain:
            raise UserError(f"{BASE_KEY} of '{path}' ('{base}') leads back to a file that "
                            f"extends it: {' -> '.join(chain)}.")
        merge_config_file(cfg, base_path, chain)
    _check_keys(cfg, loaded, f"'{path}'")
    _merge(cfg, loaded, f"'{path}'")


def merge_overrides(cfg: CN, opts: list[str]) -> None:
    """Merge command-line ``KEY VALUE`` pairs into ``cfg`` (mutable)."""
    if len(opts) % 2:
        raise UserError(f"Overrides must be KEY VALUE pairs; got an odd number: {opts}")
    nested: dict = {}
    for k, v in zip(opts[0::2], opts[1::2]):
        d = nested
        parts = k.split(".")
        for p in parts[:-1]:
            d = d.setdefault(p, {})
            if not isinstance(d, dict):
                raise UserError(f"Command-line override {k}: {'.'.join(parts[:-1])} is a value, "
                                "not a section.")
        d[parts[-1]] = v
    _check_keys(cfg, nested, "the command line")
    _merge(cfg, nested, "the command line")


def validate_cfg(cfg: CN) -> None:
    """Check enumerated and numeric keys; raise a UserError naming key, value and allowed values."""
    for key, allowed in CHOICES.items():
        value = _get(cfg, key)
        if value not in allowed:
            raise UserError(f"Invalid value {value!r} for {key}; allowed values: "
                            f"{', '.join(map(str, allowed))}.")
    for key in POSITIVE_INTS:
        value = _get(cfg, key)
        if not isinstance(value, int) or value < 1:
            raise UserError(f"Invalid value {value!r} for {key}; it must be a positive integer.")
    for key in ("INPUT.SIZE_TRAIN", "INPUT.SIZE_TEST", "DATASETS.SYNTHETIC.SIZE"):
        value = _get(cfg, key)
        if len(value) != 2 or any(int(v) < 1 for v in value):
            raise UserError(f"Invalid value {value!r} for {key}; give [height, width].")
    if cfg.DATALOADER.SAMPLER != "softmax":
        if cfg.SOLVER.SEQS_PER_BATCH % cfg.DATALOADER.NUM_INSTANCE:
            raise UserError(
                f"SOLVER.SEQS_PER_BATCH ({cfg.SOLVER.SEQS_PER_BATCH}) must be a multiple of "
                f"DATALOADER.NUM_INSTANCE ({cfg.DATALOADER.NUM_INSTANCE}) with the identity "
                f"sampler '{cfg.DATALOADER.SAMPLER}'.")
    optimizers = available_optimizers()
    if cfg.SOLVER.OPTIMIZER_NAME not in optimizers:
        raise UserError(f"Invalid value {cfg.SOLVER.OPTIMIZER_NAME!r} for SOLVER.OPTIMIZER_NAME; "
                        f"allowed values (torch.optim classes): {', '.join(optimizers)}.")
    steps = list(cfg.SOLVER.STEPS)
    if steps != sorted(steps):
        raise UserError(f"SOLVER.STEPS must be increasing; got {steps}.")
    if not isinstance(cfg.TEST.CLIPS_PER_BATCH, int) or cfg.TEST.CLIPS_PER_BATCH < 0:
        raise UserError(f"Invalid value {cfg.TEST.CLIPS_PER_BATCH!r} for TEST.CLIPS_PER_BATCH; "
                        "give a positive number of clips, or 0 for auto.")
    if cfg.DATALOADER.NUM_WORKERS < 0:
        raise UserError(f"DATALOADER.NUM_WORKERS must be >= 0; got {cfg.DATALOADER.NUM_WORKERS}.")
    if cfg.EVALUATE_ONLY and not cfg.TEST.WEIGHT:
        raise UserError("EVALUATE_ONLY (or --eval-only) needs TEST.WEIGHT: pass "
                        "TEST.WEIGHT path/to/checkpoint.pth.")
