"""Command: write a small synthetic MARS or DukeMTMC-VideoReID dataset in the real format.

Example::

    python -m tools.synthetic --format mars --out data/mars_synthetic

``python -m data.synthetic`` runs this command too (SPEC §7).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from data.synthetic import FORMATS, write_synthetic_dataset
from utils.errors import run_cli

__all__ = ["main"]


@run_cli
def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m tools.synthetic --format mars|duke --out DIR [...]``.

    Returns:
        0 on success; 2 (message on stderr) for a :class:`utils.errors.UserError`.
    """
    parser = argparse.ArgumentParser(
        prog="python -m tools.synthetic",
        description="Write a small synthetic MARS or DukeMTMC-VideoReID dataset in the real "
                    "on-disk format (images, split files, attribute CSV).")
    parser.add_argument("--format", choices=sorted(FORMATS), default="mars")
    parser.add_argument("--out", required=True, help="dataset root to create")
    parser.add_argument("--ids", type=int, default=40, help="identities (half train, half test)")
    parser.add_argument("--tracklets", type=int, default=4, help="tracklets per identity")
    parser.add_argument("--frames", type=int, default=8, help="mean frames per tracklet")
    parser.add_argument("--size", type=int, nargs=2, default=[64, 32], metavar=("H", "W"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    root = write_synthetic_dataset(args.out, args.format, args.ids, args.tracklets,
                                   args.frames, tuple(args.size), args.seed)
    print(f"wrote a synthetic {args.format} dataset to {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
