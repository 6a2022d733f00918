"""Command: write a small synthetic dataset in the MARS, DukeMTMC-VideoReID or folder format.

Example::

    python -m tools.synthetic --format mars --out data/mars_synthetic
    python -m tools.synthetic --format folder --out data/my_tracklets [--no-attributes]

An existing synthetic dataset written with other arguments is replaced only with
``--overwrite``; any other non-empty folder is refused. ``python -m data.synthetic`` runs this
command too (a public entry point, docs/behaviour.md#public-interface).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from data.synthetic import FORMATS, write_synthetic_dataset
from utils.errors import run_cli

__all__ = ["build_parser", "main"]


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


if __name__ == "__main__":
    sys.exit(main())
