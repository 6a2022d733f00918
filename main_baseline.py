"""Train and evaluate the attribute-aware video re-ID model (AITL + ASTA).

    python main_baseline.py --config_file configs/mars_aitl.yml [KEY VALUE ...]
    python main_baseline.py --config_file configs/mars_aitl.yml --eval-only TEST.WEIGHT run/x.pth
    python main_baseline.py --config_file configs/mars_aitl.yml --resume [output/<run>/...pth]
    torchrun --nproc_per_node 2 main_baseline.py --config_file configs/mars_aitl.yml

Each run writes OUTPUT_DIR/<timestamp>/ with log.txt, config.yaml, env.txt, metrics.json and
checkpoints.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

import torch

from data import make_data_loaders
from engine import (
    CONFIG_KEY,
    Interrupted,
    Trainer,
    configure_backends,
    default_argument_parser,
    parse_command_line,
    run_cli,
    run_evaluation,
    wrap_distributed,
)
from engine.defaults import (
    check_batch_identities,
    check_output_dir,
    discard_run_dir,
    load_run_config,
    run_folder_of,
    start_run,
)
from engine.evaluator import load_trained_model
from modeling import build_model
from tools.synthetic import ensure_dataset
from utils.checkpoint import Checkpointer, load_file
from utils.comm import get_rank, get_world_size, init_distributed, resolve_device
from utils.errors import UserError
from utils.logger import setup_logger

logger = logging.getLogger("reid")


def build_parser() -> argparse.ArgumentParser:
    """The command line of main_baseline.py."""
    parser = default_argument_parser(__doc__.splitlines()[0])
    parser.add_argument("--eval-only", action="store_true",
                        help="only evaluate TEST.WEIGHT (same as EVALUATE_ONLY True)")
    parser.add_argument("--resume", nargs="?", const="", default=None, metavar="PATH",
                        help="continue training from a checkpoint; without PATH, from the "
                             "last_checkpoint of the newest run in OUTPUT_DIR. The run continues "
                             "in the checkpoint's run folder (log, metrics.json, checkpoints)")
    parser.add_argument("--new-folder", action="store_true",
                        help="with --resume: write the continued run to a new "
                             "OUTPUT_DIR/<timestamp>/ folder instead of the checkpoint's")
    return parser


def parse(argv: list[str] | None = None) -> tuple[argparse.Namespace, dict | None]:
    """The command line, with ``--resume``'s path told apart from a first override."""
    args = parse_command_line(build_parser(), argv)
    if args.resume and not os.path.exists(args.resume) and CONFIG_KEY.match(args.resume):
        # "--resume SOLVER.MAX_EPOCHS 9": argparse took the first override as the path.
        args.opts.insert(0, args.resume)
        args.resume = ""
    return args, ({"EVALUATE_ONLY": True} if args.eval_only else None)


def _resume_point(cfg, args) -> tuple[str, int] | None:
    """(path, completed epochs) of the checkpoint ``--resume`` continues from, or None."""
    if args.resume is None:
        return None
    path = args.resume or Checkpointer.find_last(cfg.OUTPUT_DIR or "output")
    state = load_file(path)   # read now: a wrong file is reported before any work starts
    return path, int(state.get("epoch", 0)) if isinstance(state, dict) else 0


@run_cli
def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    args, extra = parse(argv)
    cfg = load_run_config(args.config_file, args.opts, extra)
    device, note = resolve_device(cfg.MODEL.DEVICE, cfg.MODEL.DEVICE_ID)
    distributed = init_distributed(device.type)   # before any rank-dependent work
    setup_logger("reid", None, get_rank())
    if not cfg.EVALUATE_ONLY:
        check_batch_identities(cfg, get_world_size())
    resume = _resume_point(cfg, args)
    if resume is not None and resume[1] >= cfg.SOLVER.MAX_EPOCHS:
        logger.info("%s: all %d epochs (SOLVER.MAX_EPOCHS) are done, nothing to train. Raise "
                    "SOLVER.MAX_EPOCHS to continue training.", resume[0],
                    cfg.SOLVER.MAX_EPOCHS)
        return 0
    if args.new_folder and resume is None:
        raise UserError("--new-folder goes with --resume (a new run always gets a new folder).")
    continue_in = None if resume is None or args.new_folder else run_folder_of(resume[0])
    if continue_in is None:
        check_output_dir(cfg.OUTPUT_DIR)
    run_dir = start_run(cfg, args.config_file, args.opts, continue_in=continue_in)
    if note:
        logger.info(note)
    logger.info("Device: %s, processes: %d", device, get_world_size())
    try:
        return run(cfg, device, distributed, run_dir, resume)
    except UserError:
        discard_run_dir(run_dir)   # a run that failed before writing anything leaves no folder
        raise


def run(cfg, device: torch.device, distributed: bool, run_dir: str | None,
        resume: tuple[str, int] | None) -> int:
    """Build everything from the config, then evaluate only or train; the exit status."""
    configure_backends(device, training=not cfg.EVALUATE_ONLY)
    ensure_dataset(cfg)   # DATASETS.SYNTHETIC.IF_MISSING: the demo's dataset, on first use
    train_loader, query_loader, gallery_loader, dataset = make_data_loaders(cfg)

    if cfg.EVALUATE_ONLY:
        model = load_trained_model(cfg, dataset, device)
        run_evaluation(cfg, model, query_loader, gallery_loader, dataset, device, run_dir)
        return 0

    model = build_model(cfg, dataset.num_train_pids, dataset.attr_lens, device=device).to(device)
    if distributed:
        model = wrap_distributed(model, device, cfg.MODEL.SYN_BN)
    trainer = Trainer.from_config(cfg, model, (train_loader, query_loader, gallery_loader),
                                  dataset, device, run_dir)
    if resume is not None:
        trainer.resume(resume[0])
    try:
        trainer.train()
    except Interrupted as e:
        logger.warning("%s", e)
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
