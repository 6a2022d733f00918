"""Logging to the console and to the run's log.txt (rank 0 only in multi-process runs)."""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading


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


class SignalSafeLog:
    """Log lines from a signal handler, written at once by a helper thread.

    Python runs a signal handler in the main thread between two bytecodes, possibly while that
    thread is itself writing a log line: logging from the handler then re-enters the log file's
    buffered writer ("RuntimeError: reentrant call") and prints a logging traceback. The handler
    calls :meth:`warning`, which only puts the line in a ``queue.SimpleQueue`` (whose ``put`` may
    be called from a signal handler); a daemon thread takes it and logs it, waiting for the main
    thread's write to finish. Use it as a context manager around the code whose handler logs:
    leaving it logs what is still queued.

    Args:
        logger: the logger that writes the lines.
    """

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self._lines: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def warning(self, msg: str, *args: object) -> None:
        """``logger.warning(msg, *args)``, safe to call from a signal handler."""
        self._lines.put((msg, args))

    def _write(self) -> None:
        while (line := self._lines.get()) is not None:
            self.logger.warning(line[0], *line[1])

    def __enter__(self) -> SignalSafeLog:
        self._thread = threading.Thread(target=self._write, name="signal-log", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._lines.put(None)
        self._thread.join()
        self._thread = None
