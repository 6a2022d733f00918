"""The training loop (SPEC §5): per epoch lr step, train, evaluate, checkpoint; resumable.

One :class:`Trainer` serves CPU, one GPU and torchrun multi-GPU runs. Mixed precision uses
``torch.amp`` (fp16 with a grad scaler, or bf16). Every loss term is logged; a non-finite loss
stops the run with the term's name and keeps the last good checkpoint on disk. SIGINT/SIGTERM
finish the current iteration, write a checkpoint and stop; ``--resume`` continues exactly.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from typing import Any

import torch
import torch.nn as nn
from tqdm import tqdm
from yacs.config import CfgNode

from engine.evaluator import clips_per_batch, evaluate
from utils.checkpoint import (
    Checkpointer,
    atomic_save,
    atomic_write_text,
    capture_rng_state,
    load_file,
    restore_rng_state,
)
from utils.comm import get_world_size, is_main_process, synchronize
from utils.errors import UserError
from utils.metrics import format_results_table
from utils.visualize import plot_curves

logger = logging.getLogger("reid.train")


class NonFiniteLossError(UserError):
    """A loss term became NaN or Inf; the message names it."""


class Interrupted(Exception):
    """Raised after SIGINT/SIGTERM once the interruption checkpoint is written."""


def amp_settings(cfg: CfgNode, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype or None, whether to use a grad scaler) for this config and device."""
    if not cfg.SOLVER.FP_16:
        return None, False
    if device.type != "cuda":
        logger.info("SOLVER.FP_16 is on but the device is %s: training in float32.", device.type)
        return None, False
    if cfg.SOLVER.AMP_BACKEND == "apex":
        raise UserError("SOLVER.AMP_BACKEND 'apex': NVIDIA apex removed apex.amp; use "
                        "SOLVER.AMP_BACKEND native (torch.amp, the same O1-style mixed precision).")
    dtype = torch.float16 if cfg.SOLVER.AMP_DTYPE == "float16" else torch.bfloat16
    return dtype, dtype == torch.float16


def evaluation_kwargs(cfg: CfgNode, dataset: Any, device: torch.device,
                      amp_dtype: torch.dtype | None) -> dict:
    """Keyword arguments of :func:`engine.evaluator.evaluate` from the config."""
    with_attr = cfg.ATTR_RECOG_ON and getattr(dataset, "attr_lens", None) is not None
    return dict(metric=cfg.DISTANCE, feat_norm=cfg.TEST.FEAT_NORM == "yes",
                re_rank=cfg.TEST.RE_RANKING == "yes", clips_per_batch=clips_per_batch(cfg, device),
                pool=cfg.TEST.TEMPORAL_POOL_METHOD, amp_dtype=amp_dtype,
                attr_lens=dataset.attr_lens if with_attr else None,
                attr_names=list(dataset.attr_names) if with_attr else None)


def _tensorboard_writer(run_dir: str | None):
    """A TensorBoard SummaryWriter in the run folder when tensorboard is installed, else None."""
    if not run_dir:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:   # optional dependency
        return None
    return SummaryWriter(os.path.join(run_dir, "tensorboard"))


def convert_sync_bn(model: nn.Module) -> tuple[nn.Module, int]:
    """Replace every BatchNorm layer by ``torch.nn.SyncBatchNorm``; returns (model, count)."""
    model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model, sum(isinstance(m, nn.SyncBatchNorm) for m in model.modules())


def wrap_distributed(model: nn.Module, device: torch.device, syn_bn: bool) -> nn.Module:
    """DistributedDataParallel (with SyncBatchNorm when ``syn_bn`` and world size > 1).

    SyncBatchNorm only runs on GPUs: CPU (gloo) processes keep per-process BatchNorm, said once
    in the log.
    """
    if syn_bn and get_world_size() > 1:
        if device.type == "cuda":
            model, n = convert_sync_bn(model)
            logger.info("MODEL.SYN_BN: %d BatchNorm layers synchronised across %d processes.", n,
                        get_world_size())
        else:
            logger.info("MODEL.SYN_BN: SyncBatchNorm needs GPUs; CPU processes keep their own "
                        "BatchNorm statistics.")
    return nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None)


def results_record(epoch: int, results: dict) -> dict:
    """The metrics.json entry of one evaluation (fractions)."""
    rec = {"epoch": epoch, **{k: results[k] for k in ("R1", "R5", "R10", "R20", "mAP")}}
    if "attr" in results:
        rec["attr"] = results["attr"]
    return rec


class Trainer:
    """Owns the training state and runs epochs.

    Args:
        cfg: frozen config.
        model: the VideoBaseline (already on ``device``, possibly DDP-wrapped).
        criterion: ``layers.make_loss`` output; returns a dict of terms and ``total``.
        optimizer, scheduler: from ``solver``; the scheduler is stepped once per epoch.
        loaders: (train, query, gallery) loaders; dataset: the parsed dataset.
        device: the device of this process; run_dir: output folder (None on ranks > 0).
        center_optimizer: optimizer of the center-loss centres, or None.
    """

    def __init__(self, cfg: CfgNode, model: nn.Module, criterion: nn.Module,
                 optimizer: torch.optim.Optimizer, scheduler: Any, loaders: tuple, dataset: Any,
                 device: torch.device, run_dir: str | None,
                 center_optimizer: torch.optim.Optimizer | None = None):
        self.cfg = cfg
        self.model = model
        self.criterion = criterion
        self.optimizer = optimizer
        self.center_optimizer = center_optimizer
        self.scheduler = scheduler
        self.train_loader, self.query_loader, self.gallery_loader = loaders
        self.dataset = dataset
        self.device = device
        self.run_dir = run_dir
        self.checkpointer = Checkpointer(run_dir) if run_dir else None
        self.amp_dtype, use_scaler = amp_settings(cfg, device)
        self.scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)
        self.epoch = 0          # completed epochs
        self.iteration = 0      # iterations done inside epoch ``self.epoch + 1`` (interrupted)
        self.best_r1 = -1.0
        self.history: dict[str, list] = {"evaluations": [], "epochs": []}
        self._stop_signal: int | None = None
        self.tb = _tensorboard_writer(run_dir)

    # ------------------------------------------------------------------ state
    @property
    def bare_model(self) -> nn.Module:
        """The model without its DistributedDataParallel wrapper."""
        return self.model.module if hasattr(self.model, "module") else self.model

    def state_dict(self) -> dict:
        """Every stateful object of the run (the checkpoint content)."""
        state = {
            "model": self.bare_model.state_dict(),
            "criterion": self.criterion.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
            "iteration": self.iteration,
            "best_r1": self.best_r1,
            "history": json.dumps(self.history),
            "rng": capture_rng_state(),
            "config": self.cfg.dump(),
        }
        if self.center_optimizer is not None:
            state["center_optimizer"] = self.center_optimizer.state_dict()
        return state

    def resume(self, path: str) -> None:
        """Load a checkpoint written by :meth:`save` and continue after it."""
        state = load_file(path)
        if not isinstance(state, dict) or "optimizer" not in state or "model" not in state:
            raise UserError(f"'{path}' is not a full training checkpoint of this project "
                            "(no optimizer state): use it with TEST.WEIGHT or "
                            "MODEL.PRETRAIN_CHOICE self instead of --resume.")
        from modeling import load_model_weights

        load_model_weights(self.bare_model, state["model"], source=f"checkpoint '{path}'")
        self.criterion.load_state_dict(state["criterion"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        if self.center_optimizer is not None and "center_optimizer" in state:
            self.center_optimizer.load_state_dict(state["center_optimizer"])
        self.epoch = int(state["epoch"])
        self.iteration = int(state["iteration"])
        self.best_r1 = float(state["best_r1"])
        self.history = json.loads(state["history"])
        restore_rng_state(state["rng"])
        self._write_metrics()
        logger.info("Resumed from %s: %d epochs done%s.", path, self.epoch,
                    f" and {self.iteration} iterations of the next" if self.iteration else "")

    def save(self, name: str) -> str | None:
        """Write the full checkpoint ``<run_dir>/<name>.pth`` (rank 0) atomically."""
        if self.checkpointer is None:
            return None
        path = self.checkpointer.save(name, self.state_dict())
        logger.info("Saved checkpoint %s", path)
        return path

    def _write_metrics(self) -> None:
        if self.run_dir:
            atomic_write_text(json.dumps(self.history, indent=1),
                              os.path.join(self.run_dir, "metrics.json"))

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, epoch: int) -> dict | None:
        """Evaluate on rank 0 (other ranks wait); record, log and keep the best rank-1 model."""
        results = None
        if is_main_process():
            results = evaluate(self.bare_model, self.query_loader, self.gallery_loader,
                               self.device, **evaluation_kwargs(self.cfg, self.dataset,
                                                                self.device, self.amp_dtype))
            logger.info("Validation results, epoch %d (%.1f s, %.1f clips/s):\n%s", epoch,
                        results["seconds"], results["clips_per_s"],
                        format_results_table(results["cmc"], results["mAP"]))
            if "attr" in results:
                a = results["attr"]
                logger.info("Attribute recognition: mean accuracy %.1f%%, mean F1 %.1f%% "
                            "(ID-relevant: %.1f%% / %.1f%%)", 100 * a["mean_acc"],
                            100 * a["mean_f1"], 100 * a["mean_acc_id_relevant"],
                            100 * a["mean_f1_id_relevant"])
            self.history["evaluations"].append(results_record(epoch, results))
            if self.tb is not None:
                for k in ("R1", "R5", "R10", "R20", "mAP"):
                    self.tb.add_scalar(f"eval/{k}", results[k], epoch)
            self._write_metrics()
            if epoch > 0 and results["R1"] > self.best_r1 and self.run_dir:
                self.best_r1 = results["R1"]
                # Like the original's rank1_<r1>_checkpoint_ep<e>.pth (SPEC §6: named by R1 only).
                path = os.path.join(self.run_dir,
                                    f"rank1_{round(results['R1'], 4)}_checkpoint_ep{epoch}.pth")
                atomic_save(self.bare_model.state_dict(), path)
                logger.info("New best rank-1 %.2f%%: saved %s", 100 * results["R1"], path)
        synchronize()
        return results

    # ------------------------------------------------------------------ training
    def _handle_signal(self, signum, frame) -> None:  # noqa: ARG002
        if self._stop_signal is not None:   # second signal: stop now
            raise KeyboardInterrupt
        self._stop_signal = signum
        logger.warning("Received signal %d: finishing this iteration, then saving a checkpoint.",
                       signum)

    def train(self) -> dict | None:
        """Run the remaining epochs; returns the last evaluation results (rank 0)."""
        cfg = self.cfg
        max_epochs = cfg.SOLVER.MAX_EPOCHS
        previous = {s: signal.signal(s, self._handle_signal)
                    for s in (signal.SIGINT, signal.SIGTERM)}
        results = None
        if self.epoch >= max_epochs:
            logger.info("All %d epochs (SOLVER.MAX_EPOCHS) are done: nothing to train. Raise "
                        "SOLVER.MAX_EPOCHS to continue training.", max_epochs)
        try:
            if cfg.SOLVER.EVAL_BEFORE_TRAIN and self.epoch == 0 and self.iteration == 0:
                results = self.evaluate(0)
            while self.epoch < max_epochs:
                epoch = self.epoch + 1
                if self.iteration == 0:
                    self.scheduler.step()   # epoch e trains with factor(e) (SPEC §5)
                self._train_epoch(epoch)
                self.epoch, self.iteration = epoch, 0
                if epoch % cfg.SOLVER.EVAL_PERIOD == 0 or epoch == max_epochs:
                    try:
                        results = self.evaluate(epoch)
                    except Exception:
                        # keep the trained epoch: --resume continues after it
                        logger.error("Evaluation after epoch %d failed; saving the epoch's "
                                     "checkpoint before stopping.", epoch)
                        self.save(f"checkpoint_ep{epoch}")
                        raise
                if epoch % cfg.SOLVER.CHECKPOINT_PERIOD == 0 or epoch == max_epochs:
                    self.save(f"checkpoint_ep{epoch}")
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
            if self.tb is not None:
                self.tb.close()
        if self.run_dir:
            logger.info("Training curves: %s", plot_curves(self.run_dir))
        return results

    def _train_epoch(self, epoch: int) -> None:
        cfg = self.cfg
        model, criterion = self.model, self.criterion
        model.train()
        loader = self.train_loader
        sampler = getattr(loader, "batch_sampler", None)
        for obj in (sampler, getattr(loader, "sampler", None)):
            if hasattr(obj, "set_epoch"):
                obj.set_epoch(epoch)
        skip = start_it = self.iteration
        if skip and hasattr(sampler, "set_start"):
            sampler.set_start(skip)
        num_iters = len(loader)
        lr = self.optimizer.param_groups[0]["lr"]
        log_period = cfg.SOLVER.LOG_PERIOD
        window: list[torch.Tensor] = []     # stacked loss terms of the iterations since last log
        names: list[str] | None = None
        sums = None
        n_clips = 0
        t_start = time.perf_counter()
        bar = tqdm(total=num_iters, initial=skip, desc=f"epoch {epoch}/{cfg.SOLVER.MAX_EPOCHS}",
                   disable=None if is_main_process() else True, leave=False, dynamic_ncols=True)
        it = skip
        for batch in loader:
            if skip and not hasattr(sampler, "set_start"):
                skip -= 1          # loader cannot start mid-epoch: skip the done batches
                continue
            clips, pids, _camids, attrs = batch
            clips = clips.to(self.device, non_blocking=True)
            pids = pids.to(self.device, non_blocking=True)
            attrs = ([a.to(self.device, non_blocking=True) for a in attrs]
                     if isinstance(attrs, (list, tuple)) else attrs.to(self.device))
            with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                                enabled=self.amp_dtype is not None):
                outputs = model(clips)
                losses = criterion(outputs, pids, attrs)
            total = losses["total"]
            self.optimizer.zero_grad(set_to_none=True)
            if self.center_optimizer is not None:
                self.center_optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(total).backward()
            self.scaler.step(self.optimizer)
            if self.center_optimizer is not None:
                # The centre update ignores the loss weight (as in reid-strong-baseline).
                for p in criterion.parameters():
                    if p.grad is not None:
                        p.grad.mul_(1.0 / max(cfg.SOLVER.CENTER_LOSS_WEIGHT, 1e-12))
                self.scaler.step(self.center_optimizer)
            self.scaler.update()
            if names is None:
                names = [k for k in losses if k != "total"] + ["total"]
            window.append(torch.stack([losses[k].detach().float() for k in names]))
            n_clips += clips.shape[0] * get_world_size()
            it += 1
            self.iteration = it
            bar.update(1)
            if it % log_period == 0 or it == num_iters or self._stop_signal is not None:
                values = torch.stack(window)          # (n, terms): one host sync per window
                window = []
                self._check_finite(values, names, epoch, it)
                mean = values.mean(0).tolist()
                sums = values.sum(0) if sums is None else sums + values.sum(0)
                speed = n_clips / (time.perf_counter() - t_start)
                terms = " ".join(f"{k}={v:.3f}" for k, v in zip(names, mean))
                bar.set_postfix_str(f"{terms} {speed:.1f} clips/s")
                if it % log_period == 0 or it == num_iters:
                    logger.info("Epoch[%d] Iteration[%d/%d] %s lr=%.2e %.1f clips/s", epoch, it,
                                num_iters, terms, lr, speed)
            if self._stop_signal is not None:
                bar.close()
                self.epoch = epoch - 1
                self.save("interrupted")
                raise Interrupted(f"Stopped by signal {self._stop_signal} at epoch {epoch}, "
                                  f"iteration {it}; continue with --resume.")
        bar.close()
        elapsed = time.perf_counter() - t_start
        if sums is not None and names is not None:
            avg = (sums / max(it - start_it, 1)).tolist()
            record = {"epoch": epoch, "lr": lr, "seconds": elapsed,
                      "clips_per_s": n_clips / max(elapsed, 1e-9),
                      **{k: v for k, v in zip(names, avg)}}
            self.history["epochs"].append(record)
            if self.tb is not None:
                for k, v in record.items():
                    if k != "epoch":
                        self.tb.add_scalar(f"train/{k}", v, epoch)
            self._write_metrics()
            logger.info("Epoch %d done in %.1f s (%.1f clips/s), lr %.2e, loss %.4f", epoch,
                        elapsed, record["clips_per_s"], lr, record["total"])

    @staticmethod
    def _check_finite(values: torch.Tensor, names: list[str], epoch: int, it: int) -> None:
        finite = torch.isfinite(values)
        if bool(finite.all()):
            return
        bad = [names[j] for j in range(len(names)) if not bool(finite[:, j].all())]
        bad = [b for b in bad if b != "total"] or ["total"]
        raise NonFiniteLossError(
            f"Non-finite loss ({', '.join(bad)}) at epoch {epoch}, iteration <= {it}: training "
            "stopped and no checkpoint was written after it (the last good one is kept). Try a "
            "lower SOLVER.BASE_LR, or SOLVER.AMP_DTYPE bfloat16 / SOLVER.FP_16 False.")


def run_evaluation(cfg: CfgNode, model: nn.Module, query_loader: Any, gallery_loader: Any,
                   dataset: Any, device: torch.device, run_dir: str | None) -> dict:
    """Evaluation-only run: evaluate, print the results table, write metrics.json."""
    amp_dtype, _ = amp_settings(cfg, device)
    results = evaluate(model, query_loader, gallery_loader, device,
                       **evaluation_kwargs(cfg, dataset, device, amp_dtype))
    logger.info("Results of %s (%.1f s):\n%s", cfg.TEST.WEIGHT or "the model", results["seconds"],
                format_results_table(results["cmc"], results["mAP"]))
    if "attr" in results:
        a = results["attr"]
        logger.info("Attribute recognition: mean accuracy %.1f%%, mean F1 %.1f%% (ID-relevant: "
                    "%.1f%% / %.1f%%)", 100 * a["mean_acc"], 100 * a["mean_f1"],
                    100 * a["mean_acc_id_relevant"], 100 * a["mean_f1_id_relevant"])
    if run_dir:
        atomic_write_text(json.dumps({"evaluations": [results_record(0, results)], "epochs": []},
                                     indent=1), os.path.join(run_dir, "metrics.json"))
    return results
