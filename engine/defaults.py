"""Command-line parsing and run set-up shared by every entry point.

``default_argument_parser`` gives the options of ``main_baseline.py`` (and the other commands
take the same ``--config_file`` and ``KEY VALUE`` overrides); ``load_cfg`` merges a config and
validates it, types and ranges (``config``) and the names of registered objects
(``check_choices``: backbones, fusion methods, necks, extra loss terms, datasets, clip
samplers); ``load_run_config`` is ``load_cfg`` with extra overrides; ``start_run`` (after the
process group exists) creates ``OUTPUT_DIR/<timestamp>/`` on rank 0, starts logging, writes
``config.yaml`` and ``env.txt`` and seeds python, numpy and torch per rank; ``discard_run_dir``
removes the folder of a run that failed before doing any work.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import re
import shutil
import sys
import tempfile
import time

import numpy as np
import torch
import torch.distributed as dist
from yacs.config import CfgNode

from config import load_cfg as load_typed_cfg
from data.datasets import DATASETS, datasets_with_attributes
from data.samplers import check_batch_shape
from data.sampling import TEST_SAMPLERS, TRAIN_SAMPLERS
from layers import LOSS_TERMS
from modeling import BACKBONES, FUSION_METHODS, NECKS
from utils.checkpoint import Checkpointer
from utils.comm import get_rank, get_world_size, is_main_process
from utils.env import collect_env_info
from utils.errors import UserError
from utils.logger import setup_logger

DEFAULT_CONFIG = "configs/softmax_triplet_tlaw.yml"
# A config key as written on the command line (SOLVER.BASE_LR, OUTPUT_DIR).
CONFIG_KEY = re.compile(r"^[A-Z][A-Z0-9_]*(\.[A-Z][A-Z0-9_]*)*$")


def default_argument_parser(description: str, default_config: str | None = DEFAULT_CONFIG
                            ) -> argparse.ArgumentParser:
    """The ``--config_file FILE [KEY VALUE ...]`` parser of the project's commands."""
    parser = argparse.ArgumentParser(
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Positional KEY VALUE pairs override the config file, e.g.\n"
               "  SOLVER.MAX_EPOCHS 10 MODEL.DEVICE cpu DATASETS.ROOT_DIR data/mars")
    parser.add_argument("--config_file", default=default_config, metavar="FILE",
                        help=f"yml config merged over the defaults (default: {default_config})")
    parser.add_argument("opts", nargs="*", metavar="KEY VALUE",
                        help="config overrides, applied after the file")
    return parser


def parse_command_line(parser: argparse.ArgumentParser,
                       argv: list[str] | None = None) -> argparse.Namespace:
    """Parse with options allowed before, between or after the ``KEY VALUE`` overrides."""
    return parser.parse_intermixed_args(argv)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def check_output_dir(output_dir: str) -> str:
    """Create OUTPUT_DIR if needed and check that a run folder can be written in it.

    Called before any work starts, so that a wrong OUTPUT_DIR costs nothing.

    Returns:
        The folder ("output" when OUTPUT_DIR is empty).

    Raises:
        UserError: the path (or a parent) is a file, or the folder cannot be created or written;
            the message names the path.
    """
    root = output_dir or "output"
    try:
        os.makedirs(root, exist_ok=True)
        with tempfile.TemporaryFile(dir=root):
            pass
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise UserError(f"OUTPUT_DIR '{root}' cannot be written ({reason}): set OUTPUT_DIR to a "
                        "folder you can write, e.g. OUTPUT_DIR output/my_run.") from None
    return root


def make_run_dir(output_dir: str) -> str:
    """Create a new ``output_dir/<timestamp>[-n]/`` folder; two runs never share one."""
    root = check_output_dir(output_dir)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1000):
        path = os.path.join(root, stamp if n == 0 else f"{stamp}-{n}")
        try:
            os.makedirs(path)
            return path
        except FileExistsError:
            continue
    raise UserError(f"Could not create a new run folder in '{root}'.")


def check_batch_identities(cfg: CfgNode, world_size: int) -> None:
    """Before any work of a training run: raise a UserError when the batch cannot be formed
    (:func:`data.samplers.check_batch_shape`) or a training batch of one process holds a
    single identity.

    The batch-hard triplet and AITL losses compare an anchor with other identities of its
    batch: with one identity they are exactly 0 and train nothing.
    """
    if cfg.DATALOADER.SAMPLER == "softmax":   # random batches, no identity structure
        check_batch_shape(cfg.SOLVER.SEQS_PER_BATCH, world_size)
        return
    per_process = check_batch_shape(cfg.SOLVER.SEQS_PER_BATCH, world_size,
                                    cfg.DATALOADER.NUM_INSTANCE)
    if per_process // cfg.DATALOADER.NUM_INSTANCE >= 2:
        return
    where = f" per process ({world_size} processes)" if world_size > 1 else ""
    raise UserError(
        f"SOLVER.SEQS_PER_BATCH {cfg.SOLVER.SEQS_PER_BATCH} with DATALOADER.NUM_INSTANCE "
        f"{cfg.DATALOADER.NUM_INSTANCE} gives batches of one identity{where}: the triplet and "
        "AITL losses need at least two identities per batch and process (with one they are "
        "exactly 0). Set SOLVER.SEQS_PER_BATCH to at least "
        f"{2 * cfg.DATALOADER.NUM_INSTANCE * world_size}, or lower DATALOADER.NUM_INSTANCE.")


SETUP_FILES = {"log.txt", "config.yaml", "env.txt"}


def discard_run_dir(run_dir: str | None) -> None:
    """Remove a run folder that holds nothing but its set-up files (a run that failed to start).

    A folder with anything else (a checkpoint, metrics.json, pictures) is kept.
    """
    if not run_dir or not os.path.isdir(run_dir) or set(os.listdir(run_dir)) - SETUP_FILES:
        return
    logger = logging.getLogger("reid")
    for h in [h for h in logger.handlers if isinstance(h, logging.FileHandler)]:
        logger.removeHandler(h)
        h.close()
    shutil.rmtree(run_dir, ignore_errors=True)


# The registries of the config keys that name a registered object, in the order
# check_choices checks them; each registry knows its key (Registry.key). A key whose value is
# a list (MODEL.EXTRA_LOSSES) names one entry with each element.
REGISTRIES = (BACKBONES, FUSION_METHODS, NECKS, LOSS_TERMS, DATASETS, TRAIN_SAMPLERS,
              TEST_SAMPLERS)


def _value(cfg: CfgNode, key: str):
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node


# The layouts DATASETS.SYNTHETIC.IF_MISSING can write: the formats of tools.synthetic (a
# command-level writer that engine may not import; tests/test_synthetic.py keeps them equal).
SYNTHETIC_FORMATS = ("mars", "duke", "folder")


def _check_size_pair(cfg: CfgNode) -> None:
    """The attribute streams fix the feature map to INPUT.SIZE_TRAIN's: SIZE_TEST must equal it."""
    train, test = list(cfg.INPUT.SIZE_TRAIN), list(cfg.INPUT.SIZE_TEST)
    if train == test or not cfg.ATTR_RECOG_ON or \
            cfg.DATASETS.NAME not in datasets_with_attributes():
        return
    raise UserError(
        f"INPUT.SIZE_TEST {test} differs from INPUT.SIZE_TRAIN {train}: with attributes "
        f"(ATTR_RECOG_ON True, DATASETS.NAME {cfg.DATASETS.NAME}) the attribute attention layers "
        "are built for the feature map of the training frames, so evaluating other frames "
        "fails. Use the same INPUT.SIZE_TEST as INPUT.SIZE_TRAIN (INPUT.SIZE_TEST "
        f"'[{train[0]},{train[1]}]'), or set ATTR_RECOG_ON False.")


def _check_synthetic(cfg: CfgNode) -> None:
    """The synthetic dataset's layout (SYNTHETIC_FORMATS) and size."""
    syn, name = cfg.DATASETS.SYNTHETIC, cfg.DATASETS.NAME
    formats = "/".join(SYNTHETIC_FORMATS)
    if syn.IF_MISSING and name not in SYNTHETIC_FORMATS:
        raise UserError(f"DATASETS.SYNTHETIC.IF_MISSING writes the {formats} layouts only; "
                        f"DATASETS.NAME is {name!r}. Set DATASETS.SYNTHETIC.IF_MISSING False or "
                        f"DATASETS.NAME {formats}.")
    if name == "duke" and syn.IDS * syn.TRACKLETS + syn.IDS // 8 + 1 > 9999:
        raise UserError(f"DATASETS.SYNTHETIC.IDS x DATASETS.SYNTHETIC.TRACKLETS ({syn.IDS} x "
                        f"{syn.TRACKLETS}) is too large for Duke's 4-digit tracklet folders; "
                        "use fewer.")


def check_choices(cfg: CfgNode) -> None:
    """Check the keys whose values name registered objects, and what depends on them.

    Each key of :data:`REGISTRIES` must name an entry of its registry (MODEL.NAME a backbone
    of ``modeling.BACKBONES``, DATASETS.NAME a dataset of ``data.datasets.DATASETS``, ...),
    built-in or added; so must each element of a list key (MODEL.EXTRA_LOSSES: terms of
    ``layers.LOSS_TERMS``). Then the checks that depend on the dataset: INPUT.SIZE_TEST must
    equal INPUT.SIZE_TRAIN when the attribute streams exist, and a synthetic dataset must have
    a layout that tools.synthetic writes.

    Raises:
        UserError: the first problem, naming the key, its value and the registered names
            (``Invalid value 'resnet51' for MODEL.NAME; allowed values: resnet18, ...``).
    """
    for registry in REGISTRIES:
        value = _value(cfg, registry.key)
        for name in value if isinstance(value, (list, tuple)) else (value,):
            registry.get(name)
    _check_size_pair(cfg)
    _check_synthetic(cfg)
    if cfg.DATALOADER.SAMPLER != "softmax":     # the batch shape of one process (the world
        check_batch_shape(cfg.SOLVER.SEQS_PER_BATCH, 1,   # size: check_batch_identities)
                          cfg.DATALOADER.NUM_INSTANCE)


def load_cfg(config_file: str | None = None, opts: list[str] | None = None,
             freeze: bool = True) -> CfgNode:
    """Defaults, then ``config_file``, then ``KEY VALUE`` ``opts``; validated (and frozen).

    The validation of a run: ``config.load_cfg``'s types and ranges, then
    :func:`check_choices` (the registered names and the dataset checks).

    Raises:
        UserError: unknown key, bad value or missing file, with a message naming it.
    """
    cfg = load_typed_cfg(config_file, opts, freeze=False)
    check_choices(cfg)
    if freeze:
        cfg.freeze()
    return cfg


def load_run_config(config_file: str | None, opts: list[str],
                    extra: dict | None = None) -> CfgNode:
    """Merge ``config_file`` and ``opts`` (then ``extra``) over the defaults, validate, freeze.

    Args:
        config_file: yml file (may be None for the defaults).
        opts: ``KEY VALUE`` overrides.
        extra: more overrides applied before validation (e.g. ``{"EVALUATE_ONLY": True}``).
    """
    extra_opts = [x for k, v in (extra or {}).items() for x in (k, repr(v))]
    return load_cfg(config_file, list(opts or []) + extra_opts)


def start_run(cfg: CfgNode, config_file: str | None, opts: list[str],
              write_files: bool = True, continue_in: str | None = None) -> str | None:
    """Set a run up: the run folder (rank 0) with config.yaml and env.txt, logging, seeds.

    Call it after ``utils.comm.init_distributed``: only rank 0 writes a folder, and every
    process gets its own seed ``RANDOM_SEED + rank``. Partial ``.tmp-*`` files that a killed
    checkpoint write left in the folder are removed.

    Args:
        cfg, config_file, opts: the run's frozen config and how it was given (for the log).
        write_files: create (or continue) a run folder; False logs to the console only.
        continue_in: an existing run folder to continue (``--resume``): its log.txt is
            appended to, env.txt gets this process's environment appended, and config.yaml is
            rewritten only when the config changed (the log says so). None: a new
            ``OUTPUT_DIR/<timestamp>/`` folder.

    Returns:
        The run folder (None on other ranks or without ``write_files``).
    """
    run_dir = None
    if write_files and is_main_process():
        run_dir = continue_in or make_run_dir(cfg.OUTPUT_DIR)
        config_path = os.path.join(run_dir, "config.yaml")
        config_changed = continue_in is not None and _read_text(config_path) != cfg.dump()
        if continue_in is None or config_changed:
            with open(config_path, "w", encoding="utf-8") as f:
                f.write(cfg.dump())
        with open(os.path.join(run_dir, "env.txt"), "a" if continue_in else "w",
                  encoding="utf-8") as f:
            f.write(("\n" if continue_in else "") + collect_env_info() + "\n")
    logger = setup_logger("reid", run_dir, get_rank())
    if continue_in and run_dir:
        logger.info("Resuming in run folder %s: log continued%s.", run_dir,
                    ", config.yaml rewritten with the changed config" if config_changed else "")
    logger.info("Command: %s", " ".join(sys.argv))
    if run_dir:
        logger.info("Run folder: %s", run_dir)
        for path in Checkpointer(run_dir).remove_stale_files():
            logger.info("Removed %s, the partial file of an interrupted checkpoint write.", path)
    logger.info("Config file %s merged with overrides %s", config_file, list(opts or []))
    logger.debug("Running with config:\n%s", cfg.dump())
    seed_everything(cfg.RANDOM_SEED + get_rank())
    if get_world_size() > 1:   # each process's own seed, as the processes report it
        seeds = [None] * get_world_size()
        dist.all_gather_object(seeds, torch.initial_seed())
        logger.info("Seeds of the %d processes (RANDOM_SEED + rank): %s", len(seeds), seeds)
    return run_dir


def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError:
        return None


def run_folder_of(checkpoint: str) -> str | None:
    """The run folder a checkpoint lies in (a folder with this project's ``config.yaml`` and
    ``log.txt``), or None for a file elsewhere."""
    folder = os.path.dirname(os.path.abspath(checkpoint))
    marks = ("config.yaml", "log.txt")
    return folder if all(os.path.isfile(os.path.join(folder, m)) for m in marks) else None


def default_setup(config_file: str | None, opts: list[str], extra: dict | None = None,
                  write_files: bool = True) -> tuple[CfgNode, str | None]:
    """:func:`load_run_config` then :func:`start_run` (for one-process commands).

    Returns:
        The frozen config and the run folder (None on other ranks or without ``write_files``).
    """
    cfg = load_run_config(config_file, opts, extra)
    return cfg, start_run(cfg, config_file, opts, write_files)
