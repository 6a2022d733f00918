"""Check a dataset folder before training: ``python -m tools.verify --config_file FILE``.

The command reads the config like ``main_baseline.py`` (``--config_file FILE`` and ``KEY VALUE``
overrides), runs :func:`data.verification.verify_dataset` on DATASETS.NAME at
DATASETS.ROOT_DIR (files, counts, attributes, images; see :mod:`data.verification`) with a
progress bar on stderr, and prints the report: every problem (file, tracklet, CSV line) with
its fix, in the words of the dataset (MARS, Duke: their archives and attribute download; the
folder dataset: its attributes.csv and tracklet folders). A frame must decode to training's
8-bit RGB: a PIL mode that training refuses (32-bit float, for one) is named. Exits 0 when
the folder is clean, 1 when it found a problem and 2 on a usage or config error.
``DATASETS.NAME folder`` checks the layout of your own tracklets
(:mod:`data.datasets.folder`): folder names, frames, attributes.yml and attributes.csv.

Example::

    python -m tools.verify --config_file configs/mars_aitl.yml DATASETS.ROOT_DIR /data/mars
"""

from __future__ import annotations

import argparse
import sys

from tqdm import tqdm

from data.verification import verify_dataset
from engine.defaults import DEFAULT_CONFIG, default_argument_parser, load_cfg, parse_command_line
from utils.errors import run_cli

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The command's options: ``--config_file``, ``KEY VALUE`` overrides and the check's."""
    parser = default_argument_parser(
        "Check a dataset folder: every file the parser needs, counts against the published "
        "statistics, attribute coverage, every image decodable to 8-bit RGB. Exits 0 when "
        "clean, 1 when it found a problem, 2 on a usage or config error.", DEFAULT_CONFIG)
    parser.prog = "python -m tools.verify"
    parser.add_argument("--workers", type=int, default=None,
                        help="processes decoding images (default: the available CPUs)")
    parser.add_argument("--limit", type=int, default=100,
                        help="most problems listed per kind (0: all; default 100)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--skip-images", action="store_true",
                        help="only check that the images exist, do not decode them")
    return parser


class _ProgressBar:
    """A tqdm bar on stderr driven by ``verify_dataset``'s ``progress(done, total)`` calls."""

    def __init__(self) -> None:
        self.bar: tqdm | None = None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            self.bar = tqdm(total=total, initial=done, unit="img", desc="decoding images",
                            file=sys.stderr, mininterval=0.5)
        else:
            self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@run_cli
def main(argv: list[str] | None = None) -> int:
    """Command line; returns 0 (clean), 1 (problems found) or 2 (usage or config error)."""
    args = parse_command_line(build_parser(), argv)
    cfg = load_cfg(args.config_file or None, args.opts)
    bar = None if args.no_progress else _ProgressBar()
    try:
        report = verify_dataset(cfg, workers=args.workers or None, progress=bar,
                                decode=not args.skip_images)
    finally:
        if bar is not None:
            bar.close()
    print(report.format(args.limit))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
