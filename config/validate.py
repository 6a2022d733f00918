"""Load, merge and validate configurations with errors that name the key and the fix.

This layer checks types and ranges, and the keys whose few values are fixed here. The keys
whose values name a registered object (MODEL.NAME, MODEL.FUSION_METHOD, MODEL.NECK,
MODEL.EXTRA_LOSSES, DATASETS.NAME, DATASETS.TRAIN_SAMPLE_METHOD, DATASETS.TEST_SAMPLE_METHOD)
and the checks that depend on what a dataset is are checked against the registries of the
packages that own them, by ``engine.defaults.check_choices`` (``engine.load_cfg`` runs both);
here only their types (MODEL.EXTRA_LOSSES: a list of distinct names, with weights).
"""

from __future__ import annotations

import ast
import difflib
import inspect
import math
import os
import re

import torch
import yaml
from yacs.config import CfgNode as CN

from config.defaults import _C
from utils.errors import UserError

# Enumerated keys and their allowed values (the registry-backed keys: engine.defaults).
CHOICES: dict[str, tuple] = {
    "MODEL.DEVICE": ("cuda", "cpu"),
    "MODEL.ARCH": ("video_baseline",),
    "MODEL.LAST_STRIDE": (1, 2),
    "MODEL.PRETRAIN_CHOICE": ("imagenet", "self", "none"),
    "MODEL.IF_WITH_CENTER": ("yes", "no"),
    "MODEL.METRIC_LOSS_TYPE": ("triplet", "center", "triplet_center"),
    "MODEL.IF_LABELSMOOTH": ("on", "off"),
    "DATASETS.ATTRIBUTE_LOSS": ("bce", "mce"),
    "DATALOADER.SAMPLER": ("softmax", "triplet", "softmax_triplet"),
    "SOLVER.WARMUP_METHOD": ("linear", "constant"),
    "SOLVER.AMP_DTYPE": ("float16", "bfloat16"),
    "SOLVER.AMP_BACKEND": ("native", "apex"),
    "SOLVER.CPU_PRECISION": ("auto", "float32", "bfloat16", "float16"),
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
    "SOLVER.SEQS_PER_BATCH", "DATALOADER.READ_RETRIES", "SOLVER.GRAD_SCALER_GROWTH_INTERVAL",
)

# Numeric keys with a range: key -> (lowest, highest, whether the lowest itself is allowed, what
# the value is). None: unbounded; a highest given is allowed. Keys whose default is an int take
# integers only.
RANGES: dict[str, tuple[float | None, float | None, bool, str]] = {
    "INPUT.PROB": (0, 1, True, "the probability of a horizontal flip"),
    "INPUT.RE_PROB": (0, 1, True, "the probability of random erasing"),
    "INPUT.PADDING": (0, None, True, "pixels of padding before the random crop, 0 for none"),
    "DATALOADER.NUM_WORKERS": (0, None, True, "loader worker processes, 0 for none"),
    "TEST.CLIPS_PER_BATCH": (0, None, True, "clips per evaluation forward, 0 for auto"),
    "SOLVER.BASE_LR": (0, None, False, "the learning rate"),
    "SOLVER.BIAS_LR_FACTOR": (0, None, True, "the factor of the bias parameters' learning rate"),
    "SOLVER.MOMENTUM": (0, 1, True, "the SGD momentum"),
    "SOLVER.MARGIN": (0, None, True, "the triplet loss margin"),
    "SOLVER.AITL_MARGIN": (0, None, True, "the margin of the AITL terms"),
    "SOLVER.CENTER_LR": (0, None, False, "the learning rate of the center loss centres"),
    "SOLVER.CENTER_LOSS_WEIGHT": (0, None, True, "the weight of the center loss term"),
    "SOLVER.WEIGHT_DECAY": (0, None, True, "the weight decay of the non-bias parameters"),
    "SOLVER.WEIGHT_DECAY_BIAS": (0, None, True, "the weight decay of the bias parameters"),
    "SOLVER.GAMMA": (0, None, False, "the learning-rate factor at each of SOLVER.STEPS"),
    "SOLVER.WARMUP_FACTOR": (0, 1, False, "the learning-rate factor at the start of the warmup"),
    "SOLVER.WARMUP_ITERS": (0, None, True, "the warmup length in epochs, 0 for none"),
    "SOLVER.GRAD_SCALER_INIT_SCALE": (0, None, False, "the first loss scale of the grad scaler"),
    "RANDOM_SEED": (0, 2**63 - 1, True, "the seed of python, numpy and torch"),
    # the ranges of tools.synthetic.write_synthetic_dataset
    "DATASETS.SYNTHETIC.IDS": (2, 4000, True, "identities, half train, half test"),
    "DATASETS.SYNTHETIC.TRACKLETS": (2, 99, True, "tracklets per identity, on two cameras "
                                                  "at least"),
    "DATASETS.SYNTHETIC.FRAMES": (1, 790, True, "frames per tracklet"),
    "DATASETS.SYNTHETIC.SEED": (0, None, True, "the seed of the synthetic dataset"),
}

# Numeric keys that are not checked: the original declares them and nothing reads them.
UNCHECKED = ("SOLVER.CLUSTER_MARGIN", "SOLVER.CENTER_ON", "SOLVER.RANGE_K", "SOLVER.RANGE_MARGIN",
             "SOLVER.RANGE_ALPHA", "SOLVER.RANGE_BETA", "SOLVER.RANGE_LOSS_WEIGHT",
             "TEST.SEQS_PER_BATCH")

# [height, width] keys and their smallest values.
SIZES = {"INPUT.SIZE_TRAIN": (1, 1), "INPUT.SIZE_TEST": (1, 1),
         "DATASETS.SYNTHETIC.SIZE": (16, 8)}


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
                        "--config_file (e.g. configs/demo.yml).")
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


def _bracket_depth(token: str) -> int:
    return token.count("[") + token.count("(") - token.count("]") - token.count(")")


def split_list_value(opts: list[str]) -> tuple[str, str] | None:
    """(key, value) of the first list value that the shell split into several arguments.

    ``INPUT.SIZE_TRAIN [255, 127]`` unquoted reaches the program as ``'[255,'`` and ``'127]'``:
    an argument opening a bracket that a later argument closes.

    Example:
        >>> split_list_value(["INPUT.SIZE_TRAIN", "[255,", "127]"])
        ('INPUT.SIZE_TRAIN', '[255,127]')
    """
    for i, token in enumerate(opts):
        depth = _bracket_depth(token)
        if depth <= 0 or not token.lstrip().startswith(("[", "(")):
            continue
        for j in range(i + 1, len(opts)):
            depth += _bracket_depth(opts[j])
            if depth <= 0:
                pieces = (p.strip().strip(",").strip() for p in opts[i:j + 1])
                return (opts[i - 1] if i else "KEY"), ",".join(p for p in pieces if p)
        return None
    return None


def merge_overrides(cfg: CN, opts: list[str]) -> None:
    """Merge command-line ``KEY VALUE`` pairs into ``cfg`` (mutable).

    Raises:
        UserError: an odd number of arguments, a list value split by the shell (the message
            shows it quoted), an unknown key or a bad value.
    """
    split = split_list_value(opts)
    if split:
        raise UserError(f"The list value of {split[0]} reached the program as several "
                        f"arguments (the shell splits a value at its spaces): quote it, e.g. "
                        f"{split[0]} '{split[1]}'.")
    if len(opts) % 2:
        raise UserError(f"Overrides must be KEY VALUE pairs; got an odd number ({len(opts)}): "
                        f"{opts}. Is a KEY or a VALUE missing? A value with spaces must be "
                        "quoted as one argument, e.g. INPUT.SIZE_TRAIN '[256, 128]'.")
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


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _interval(low, high, low_ok: bool, integer: bool) -> str:
    """The allowed values of a :data:`RANGES` entry in words: "> 0", "an integer in [2, 99]"."""
    kind = "an integer " if integer else ""
    if high is None:
        return f"{kind}{'>=' if low_ok else '>'} {low}"
    bits = (high + 1).bit_length() - 1 if isinstance(high, int) else 0
    top = f"2**{bits} - 1" if bits > 31 and high == 2**bits - 1 else high   # RANDOM_SEED
    return f"{kind or 'a number '}in {'[' if low_ok else '('}{low}, {top}]"


def _check_ranges(cfg: CN) -> None:
    for key in POSITIVE_INTS:
        value = _get(cfg, key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise UserError(f"Invalid value {value!r} for {key}; it must be a positive integer.")
    for key, (low, high, low_ok, what) in RANGES.items():
        value = _get(cfg, key)
        integer = isinstance(_default_of(key), int)
        ok = (isinstance(value, int) if integer else _is_number(value)) \
            and not isinstance(value, bool) and math.isfinite(value) \
            and (value >= low if low_ok else value > low) and (high is None or value <= high)
        if not ok:
            raise UserError(f"Invalid value {value!r} for {key} ({what}); it must be "
                            f"{_interval(low, high, low_ok, integer)}.")


def _check_lists(cfg: CN) -> None:
    """[height, width] sizes, the normalisation constants and SOLVER.STEPS."""
    for key, smallest in SIZES.items():
        value = list(_get(cfg, key))
        if len(value) != 2 or not all(isinstance(v, int) and not isinstance(v, bool)
                                      and v >= m for v, m in zip(value, smallest)):
            least = "positive integers" if smallest == (1, 1) else \
                f"integers, at least {list(smallest)}"
            raise UserError(f"Invalid value {value!r} for {key}; give [height, width], two "
                            f"{least}, e.g. [256, 128].")
    for key in ("INPUT.PIXEL_MEAN", "INPUT.PIXEL_STD"):
        value = list(_get(cfg, key))
        if len(value) != 3 or not all(_is_number(v) and math.isfinite(v) for v in value):
            raise UserError(f"Invalid value {value!r} for {key}; give three numbers, one per RGB "
                            f"channel (default {list(_default_of(key))}).")
    if any(v <= 0 for v in cfg.INPUT.PIXEL_STD):
        raise UserError(f"Invalid value {list(cfg.INPUT.PIXEL_STD)!r} for INPUT.PIXEL_STD; every "
                        "standard deviation must be > 0 (the frames are divided by it).")
    steps = list(cfg.SOLVER.STEPS)
    if not all(isinstance(e, int) and not isinstance(e, bool) and e >= 1 for e in steps) \
            or any(b <= a for a, b in zip(steps, steps[1:])):
        raise UserError(f"Invalid value {steps!r} for SOLVER.STEPS; give strictly increasing "
                        "epochs >= 1 at which the learning rate is multiplied by SOLVER.GAMMA, "
                        "e.g. [30, 55], or [] for no decay.")
    if not re.fullmatch(r"\s*\d+\s*(,\s*\d+\s*)*", cfg.MODEL.DEVICE_ID):
        raise UserError(f"Invalid value {cfg.MODEL.DEVICE_ID!r} for MODEL.DEVICE_ID; give a CUDA "
                        "device index, e.g. 0 (of a list such as 0,1 the first is used).")


def _check_extra_losses(cfg: CN) -> None:
    """MODEL.EXTRA_LOSSES: distinct non-empty strings (whether they are registered:
    ``engine.defaults.check_choices``); MODEL.EXTRA_LOSS_WEIGHTS: [] or one number >= 0 each."""
    names = list(cfg.MODEL.EXTRA_LOSSES)
    if not all(isinstance(n, str) and n for n in names) or len(set(names)) != len(names):
        raise UserError(f"Invalid value {names!r} for MODEL.EXTRA_LOSSES; give a list of "
                        "distinct names of registered loss terms, e.g. ['my_term'], or [] for "
                        "none.")
    weights = list(cfg.MODEL.EXTRA_LOSS_WEIGHTS)
    if not all(_is_number(w) and math.isfinite(w) and w >= 0 for w in weights):
        raise UserError(f"Invalid value {weights!r} for MODEL.EXTRA_LOSS_WEIGHTS; every weight "
                        "must be a number >= 0.")
    if weights and len(weights) != len(names):
        raise UserError(f"MODEL.EXTRA_LOSS_WEIGHTS {weights!r} (length {len(weights)}) must "
                        f"give one weight per name of MODEL.EXTRA_LOSSES {names!r} (length "
                        f"{len(names)}), or be [] for 1.0 each.")


def _check_solver(cfg: CN) -> None:
    """The optimizer name and the settings it can take; mixed precision; the center loss."""
    s = cfg.SOLVER
    optimizers = available_optimizers()
    if s.OPTIMIZER_NAME not in optimizers:
        raise UserError(f"Invalid value {s.OPTIMIZER_NAME!r} for SOLVER.OPTIMIZER_NAME; "
                        f"allowed values (torch.optim classes): {', '.join(optimizers)}.")
    accepted = inspect.signature(getattr(torch.optim, s.OPTIMIZER_NAME).__init__).parameters
    if "weight_decay" not in accepted and (s.WEIGHT_DECAY or s.WEIGHT_DECAY_BIAS):
        raise UserError(f"SOLVER.OPTIMIZER_NAME {s.OPTIMIZER_NAME} has no weight decay, but "
                        f"SOLVER.WEIGHT_DECAY is {s.WEIGHT_DECAY} and SOLVER.WEIGHT_DECAY_BIAS "
                        f"{s.WEIGHT_DECAY_BIAS}: set both to 0, or choose another optimizer.")
    if s.FP_16 and s.AMP_BACKEND == "apex":
        raise UserError("SOLVER.AMP_BACKEND 'apex': NVIDIA apex removed apex.amp; use "
                        "SOLVER.AMP_BACKEND native (torch.amp, the same O1-style mixed "
                        "precision), or SOLVER.FP_16 False.")
    if s.USE_CENTER_LOSS and (cfg.MODEL.IF_WITH_CENTER != "yes"
                              or "center" not in cfg.MODEL.METRIC_LOSS_TYPE):
        raise UserError(
            "SOLVER.USE_CENTER_LOSS True needs MODEL.IF_WITH_CENTER 'yes' and "
            "MODEL.METRIC_LOSS_TYPE 'triplet_center' (got "
            f"{cfg.MODEL.IF_WITH_CENTER!r} and {cfg.MODEL.METRIC_LOSS_TYPE!r}); set them, "
            "or set SOLVER.USE_CENTER_LOSS False.")


def _check_data(cfg: CN) -> None:
    """Evaluation-only runs' weights (the dataset checks: engine.defaults.check_choices)."""
    if cfg.EVALUATE_ONLY and not cfg.TEST.WEIGHT:
        raise UserError("EVALUATE_ONLY (or --eval-only) needs TEST.WEIGHT: pass "
                        "TEST.WEIGHT path/to/checkpoint.pth.")


def validate_cfg(cfg: CN) -> None:
    """Check the types and ranges of the keys a run reads before anything is built.

    Enumerated keys (:data:`CHOICES`), positive integers (:data:`POSITIVE_INTS`), numeric
    ranges (:data:`RANGES`), [height, width] sizes, the normalisation constants, SOLVER.STEPS,
    the types of the extra loss terms' names and weights, and the keys that must agree: the
    optimizer with the weight decays, the center loss with the metric loss, the batch with the
    identity sampler, evaluation-only runs with TEST.WEIGHT. The keys that name registered
    objects (backbone, fusion, neck, extra loss terms, dataset, clip sampling) and the dataset
    checks are ``engine.defaults.check_choices``'s.

    Raises:
        UserError: the first problem, naming the key, its value and what it must be.
    """
    for key, allowed in CHOICES.items():
        value = _get(cfg, key)
        if value not in allowed:
            raise UserError(f"Invalid value {value!r} for {key}; allowed values: "
                            f"{', '.join(map(str, allowed))}.")
    _check_ranges(cfg)
    _check_lists(cfg)
    _check_extra_losses(cfg)
    _check_solver(cfg)
    _check_data(cfg)
