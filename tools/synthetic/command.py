"""Command: write a small synthetic dataset in the MARS, DukeMTMC-VideoReID or folder format.

Example::

    python -m tools.synthetic --format mars --out data/mars_synthetic
    python -m tools.synthetic --format folder --out data/my_tracklets [--no-attributes]

An existing synthetic dataset written with other arguments is replaced only with
``--overwrite``; any other non-empty folder is refused. ``python -m data.synthetic`` runs this
command too (a public entry point, docs/behaviour.md#public-interface).

:func:`ensure_dataset` is the first-use writer of the commands that read the dataset of a
config (``main_baseline.py`` and the tools): with DATASETS.SYNTHETIC.IF_MISSING True it writes
the synthetic dataset of DATASETS.SYNTHETIC into a missing DATASETS.ROOT_DIR (what
``configs/demo.yml`` asks for) before :func:`data.build_dataset`, which only reads.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence

from yacs.config import CfgNode

from tools.synthetic.plan import FORMATS
from tools.synthetic.write import write_synthetic_dataset
from utils.comm import is_main_process, synchronize
from utils.errors import UserError, run_cli

__all__ = ["build_parser", "ensure_dataset", "main"]

# The logger of the dataset a command reads (its first-use line is logged under the data's name).
logger = logging.getLogger("reid.data")


def ensure_dataset(cfg: CfgNode) -> None:
    """Write the synthetic dataset of DATASETS.SYNTHETIC at DATASETS.ROOT_DIR when
    DATASETS.SYNTHETIC.IF_MISSING is True and that folder does not exist; else nothing.

    Call it before building the dataset of ``cfg`` (:func:`data.build_dataset`,
    :func:`data.make_data_loaders`). Rank 0 logs and writes; then every process that found the
    folder missing waits at a barrier (none without a process group), so no rank reads a
    half-written folder. An empty DATASETS.ROOT_DIR is left to :func:`data.build_dataset`,
    which names it.

    Raises:
        UserError: DATASETS.NAME is not one of the formats of :data:`FORMATS`; the writer's
            errors (:func:`write_synthetic_dataset`).
    """
    name, root, syn = cfg.DATASETS.NAME, cfg.DATASETS.ROOT_DIR, cfg.DATASETS.SYNTHETIC
    if not syn.IF_MISSING or not root or os.path.isdir(root):
        return
    if name not in FORMATS:
        raise UserError(f"DATASETS.SYNTHETIC.IF_MISSING writes the {'/'.join(FORMATS)} formats "
                        f"only; DATASETS.NAME is {name!r}. Set IF_MISSING False or NAME "
                        f"{'/'.join(FORMATS)}.")
    if is_main_process():
        logger.info("DATASETS.ROOT_DIR %s does not exist: writing a synthetic %s dataset "
                    "(%d ids x %d tracklets x %d frames, %dx%d, seed %d)", root, name, syn.IDS,
                    syn.TRACKLETS, syn.FRAMES, syn.SIZE[0], syn.SIZE[1], syn.SEED)
        write_synthetic_dataset(root, name, syn.IDS, syn.TRACKLETS, syn.FRAMES,
                                tuple(syn.SIZE), syn.SEED)
    synchronize()


def build_parser() -> argparse.ArgumentParser:
    """The command's options."""
    parser = argparse.ArgumentParser(
        prog="python -m tools.synthetic",
        description="Write a small synthetic video re-ID dataset in the real MARS or "
                    "DukeMTMC-VideoReID on-disk format, or in the folder layout of your own data "
                    "(images, split files, attribute files).")
    parser.add_argument("--format", choices=sorted(FORMATS), default="mars")
    parser.add_argument("--out", required=True, help="dataset root to create")
    parser.add_argument("--ids", type=int, default=40, help="identities (half train, half test)")
    parser.add_argument("--tracklets", type=int, default=4, help="tracklets per identity")
    parser.add_argument("--frames", type=int, default=8, help="mean frames per tracklet")
    parser.add_argument("--size", type=int, nargs=2, default=[64, 32], metavar=("H", "W"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-attributes", action="store_true",
                        help="write no attribute files (train with ATTR_RECOG_ON False)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a synthetic dataset written there with other arguments")
    return parser


@run_cli
def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m tools.synthetic --format mars|duke|folder --out DIR [...]``.

    Returns:
        0 on success; 2 (message on stderr) for a :class:`utils.errors.UserError`.
    """
    args = build_parser().parse_args(argv)
    root = write_synthetic_dataset(args.out, args.format, args.ids, args.tracklets,
                                   args.frames, tuple(args.size), args.seed,
                                   attributes=not args.no_attributes, overwrite=args.overwrite)
    without = " without attributes" if args.no_attributes else ""
    print(f"wrote a synthetic {args.format} dataset{without} to {root}")
    return 0

