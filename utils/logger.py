"""Logging to the console and to the run's log.txt (rank 0 only in multi-process runs)."""

from __future__ import annotations

import logging
import os
import sys


def setup_logger(name: str = "reid", output_dir: str | None = None,
                 rank: int = 0) -> logging.Logger:
    """Configure the project's root logger ``name`` (children such as "reid.data" inherit it).

    Args:
        name: logger name.
        output_dir: folder of ``log.txt``; None logs to the console only.
        rank: process rank; ranks other than 0 only log warnings and errors.
    """
    logger = logging.getLogger(name)
    logger.setLevel(logging.DEBUG if rank == 0 else logging.WARNING)
    logger.propagate = False
    for h in list(logger.handlers):
        logger.removeHandler(h)
        h.close()
    fmt = logging.Formatter("[%(asctime)s %(name)s] %(message)s", datefmt="%m/%d %H:%M:%S")
    console = logging.StreamHandler(sys.stdout)
    console.setLevel(logging.INFO)
    console.setFormatter(fmt)
    logger.addHandler(console)
    if output_dir is not None and rank == 0:
        fh = logging.FileHandler(os.path.join(output_dir, "log.txt"), encoding="utf-8")
        fh.setLevel(logging.DEBUG)
        fh.setFormatter(fmt)
        logger.addHandler(fh)
    return logger
