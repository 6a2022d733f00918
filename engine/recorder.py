"""What a run records beside its loop: metrics.json, TensorBoard scalars, curves and log lines.

The training loop and the evaluation-only runner hand their numbers to a :class:`RunRecorder`;
it owns the history (saved in checkpoints, so a resumed run continues it), writes
``metrics.json`` atomically after every change, mirrors the scalars to TensorBoard when it is
installed, logs the results tables and draws ``curves.png`` at the end.
"""

from __future__ import annotations

import json
import logging
import os

from utils.checkpoint import atomic_write_text
from utils.metrics import format_metrics_table
from utils.pictures import plot_curves

logger = logging.getLogger("reid.train")

# The entries of an evaluation's results (engine.evaluator.evaluate) that are no metric: the
# CMC curve, the timings and the attribute metrics (recorded apart). Every other entry is one
# of utils.metrics.RETRIEVAL_METRICS' metrics.
NOT_METRICS = ("cmc", "seconds", "clips_per_s", "attr")


def metric_values(results: dict) -> dict[str, float]:
    """The named metrics (fractions) of an evaluation's results, in their order."""
    return {k: v for k, v in results.items() if k not in NOT_METRICS}


def results_record(epoch: int, results: dict) -> dict:
    """The metrics.json entry of one evaluation (fractions)."""
    rec = {"epoch": epoch, **metric_values(results)}
    if "attr" in results:
        rec["attr"] = results["attr"]
    return rec


def log_results(heading: str, results: dict) -> None:
    """Log the metrics table of an evaluation and, with attributes, the attribute line."""
    logger.info("%s:\n%s", heading, format_metrics_table(metric_values(results)))
    if "attr" in results:
        a = results["attr"]
        logger.info("Attribute recognition: mean accuracy %.1f%%, mean F1 %.1f%% "
                    "(ID-relevant: %.1f%% / %.1f%%)", 100 * a["mean_acc"], 100 * a["mean_f1"],
                    100 * a["mean_acc_id_relevant"], 100 * a["mean_f1_id_relevant"])


def _tensorboard_writer(run_dir: str):
    """A TensorBoard SummaryWriter in the run folder when tensorboard is installed, else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:   # optional dependency
        return None
    return SummaryWriter(os.path.join(run_dir, "tensorboard"))


class RunRecorder:
    """The records of one run (rank 0 writes; with ``run_dir`` None it only logs).

    Args:
        run_dir: the run folder, or None (other ranks, or no files wanted).
        tensorboard: mirror the scalars to ``run_dir/tensorboard`` when tensorboard is installed.
        info: more top-level entries of metrics.json (e.g. ``{"weights": path}``).
    """

    def __init__(self, run_dir: str | None, tensorboard: bool = True,
                 info: dict | None = None) -> None:
        self.run_dir = run_dir
        self.history: dict = {**(info or {}), "evaluations": [], "epochs": []}
        self._tensorboard = bool(run_dir and tensorboard)
        self._tb = None        # opened at the first scalar: a run that fails first leaves none

    def _scalars(self, prefix: str, values: dict, step: int) -> None:
        """Mirror scalars to TensorBoard (when wanted and installed)."""
        if self._tensorboard and self._tb is None:
            self._tb = _tensorboard_writer(self.run_dir)
            self._tensorboard = self._tb is not None
        if self._tb is not None:
            for k, v in values.items():
                self._tb.add_scalar(f"{prefix}/{k}", v, step)

    # ------------------------------------------------------------------ state
    def state(self) -> str:
        """The history as the JSON string that checkpoints store."""
        return json.dumps(self.history)

    def load_state(self, state: str) -> None:
        """Continue the history of a checkpoint (:meth:`state`) and rewrite metrics.json."""
        self.history = json.loads(state)
        self.write()

    def write(self) -> None:
        """Write ``metrics.json`` (atomically)."""
        if self.run_dir:
            atomic_write_text(json.dumps(self.history, indent=1),
                              os.path.join(self.run_dir, "metrics.json"))

    # ------------------------------------------------------------------ records
    def evaluation(self, epoch: int, results: dict, heading: str) -> None:
        """Log an evaluation under ``heading``, add it to the history and to TensorBoard."""
        log_results(heading, results)
        self.history["evaluations"].append(results_record(epoch, results))
        self._scalars("eval", metric_values(results), epoch)
        self.write()

    def iterations(self, epoch: int, it: int, num_iters: int, terms: str, lr: float,
                   clips_per_s: float) -> None:
        """The log line of the iterations since the last one (``terms``: "name=value ...")."""
        logger.info("Epoch[%d] Iteration[%d/%d] %s lr=%.2e %.1f clips/s", epoch, it, num_iters,
                    terms, lr, clips_per_s)

    def epoch(self, record: dict) -> None:
        """Add an epoch's record (epoch, lr, seconds, clips_per_s, loss terms) and log it."""
        self.history["epochs"].append(record)
        self._scalars("train", {k: v for k, v in record.items() if k != "epoch"},
                      record["epoch"])
        self.write()
        logger.info("Epoch %d done in %.1f s (%.1f clips/s), lr %.2e, loss %.4f", record["epoch"],
                    record["seconds"], record["clips_per_s"], record["lr"], record["total"])

    def close(self) -> None:
        """Close TensorBoard and draw ``curves.png`` of the history (with a run folder and a
        history to draw)."""
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self.run_dir and (self.history["epochs"] or self.history["evaluations"]):
            path = plot_curves(self.history["epochs"], self.history["evaluations"],
                               os.path.join(self.run_dir, "curves.png"))
            logger.info("Training curves: %s", path)
