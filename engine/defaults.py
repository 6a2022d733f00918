"""Command-line parsing and run set-up shared by every entry point.

``default_argument_parser`` gives the options of ``main_baseline.py`` (and the other commands
take the same ``--config_file`` and ``KEY VALUE`` overrides); ``default_setup`` merges and
validates the config, creates ``OUTPUT_DIR/<timestamp>/``, starts logging, writes
``config.yaml`` and ``env.txt`` and seeds python, numpy and torch.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import sys
import time

import numpy as np
import torch
from yacs.config import CfgNode

from config import load_cfg
from utils.comm import get_rank, is_main_process
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


def make_run_dir(output_dir: str) -> str:
    """Create a new ``output_dir/<timestamp>[-n]/`` folder; two runs never share one."""
    root = output_dir or "output"
    os.makedirs(root, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1000):
        path = os.path.join(root, stamp if n == 0 else f"{stamp}-{n}")
        try:
            os.makedirs(path)
            return path
        except FileExistsError:
            continue
    raise UserError(f"Could not create a new run folder in '{root}'.")


def default_setup(config_file: str | None, opts: list[str], extra: dict | None = None,
                  write_files: bool = True) -> tuple[CfgNode, str | None]:
    """Merge ``config_file`` and ``opts`` over the defaults, validate, freeze and set the run up.

    Args:
        config_file: yml file (may be None for the defaults).
        opts: ``KEY VALUE`` overrides.
        extra: more overrides applied before validation (e.g. ``{"EVALUATE_ONLY": True}``).
        write_files: create the run folder (rank 0 only) with log.txt, config.yaml and env.txt.

    Returns:
        The frozen config and the run folder (None on other ranks or without ``write_files``).
    """
    extra_opts = [x for k, v in (extra or {}).items() for x in (k, repr(v))]
    cfg = load_cfg(config_file, list(opts or []) + extra_opts)
    run_dir = None
    if write_files and is_main_process():
        run_dir = make_run_dir(cfg.OUTPUT_DIR)
        with open(os.path.join(run_dir, "config.yaml"), "w", encoding="utf-8") as f:
            f.write(cfg.dump())
        with open(os.path.join(run_dir, "env.txt"), "w", encoding="utf-8") as f:
            f.write(collect_env_info() + "\n")
    logger = setup_logger("reid", run_dir, get_rank())
    logger.info("Command: %s", " ".join(sys.argv))
    if run_dir:
        logger.info("Run folder: %s", run_dir)
    logger.info("Config file %s merged with overrides %s", config_file, list(opts or []))
    logger.debug("Running with config:\n%s", cfg.dump())
    seed_everything(cfg.RANDOM_SEED + get_rank())
    return cfg, run_dir
