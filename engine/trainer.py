"""The training loop: per epoch lr step, train, evaluate, checkpoint; resumable.

One :class:`Trainer` serves CPU, one GPU and torchrun multi-GPU runs. Mixed precision uses
``torch.amp`` (fp16 with a grad scaler, or bf16). Every loss term is logged; a non-finite loss
stops the run with the term's name and keeps the last good checkpoint on disk. SIGINT/SIGTERM
finish the current iteration, write a checkpoint and stop; ``--resume`` continues exactly.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
import torch.distributed as dist
import torch.nn as nn
from tqdm import tqdm
from yacs.config import CfgNode

from engine.compile import compile_for_training
from engine.distributed import unwrap
from engine.evaluator import evaluate, evaluation_kwargs
from engine.precision import amp_settings, evaluation_dtype
from engine.recorder import RunRecorder
from layers import make_loss
from modeling import load_model_weights
from solver import make_center_optimizer, make_optimizer, make_scheduler
from utils.checkpoint import (
    Checkpointer,
    atomic_save,
    best_checkpoint_name,
    capture_rng_state,
    load_file,
    restore_rng_state,
)
from utils.comm import get_world_size, is_main_process, max_across_ranks
from utils.errors import UserError
from utils.logger import SignalSafeLog

logger = logging.getLogger("reid.train")


class NonFiniteLossError(UserError):
    """A loss term became NaN or Inf; the message names it."""


class Interrupted(BaseException):
    """Raised after SIGINT/SIGTERM: the run stops (exit status ``128 + signum``).

    After the first signal the interruption checkpoint is written first; a second signal
    stops at once (``checkpoint`` False), raised by the signal handler wherever the main thread
    is. Like ``KeyboardInterrupt`` it is no ``Exception``, so that code catching every error
    there (logging's write of a line, the DataLoader's wait for a batch) lets it through.
    """

    def __init__(self, message: str, signum: int, checkpoint: bool = True) -> None:
        super().__init__(message)
        self.signum = signum
        self.checkpoint = checkpoint

    @property
    def exit_code(self) -> int:
        """The shell convention: 130 for SIGINT, 143 for SIGTERM."""
        return 128 + self.signum


Timer = Callable[[str], AbstractContextManager]


def _no_timer(_phase: str) -> AbstractContextManager:
    return nullcontext()


class _EpochMeter:
    """Loss terms, clip count and time of one epoch; one host sync per logging window."""

    def __init__(self, state: dict | None = None) -> None:
        """``state``: :meth:`state` of an interrupted epoch, to continue its sums and time."""
        state = state or {}
        self.names: list[str] | None = state.get("names")
        self.window: list[torch.Tensor] = []   # stacked terms of the iterations since the flush
        self.sums: torch.Tensor | None = (torch.tensor(state["sums"], dtype=torch.float64)
                                          if state.get("sums") is not None else None)
        self.steps = int(state.get("steps", 0))
        self.clips = int(state.get("clips", 0))
        self.skipped = int(state.get("skipped_steps", 0))   # flushed steps the scaler skipped
        self.skipped_window: list[torch.Tensor] = []
        self.start = time.perf_counter() - float(state.get("seconds", 0.0))

    def state(self) -> dict:
        """The partial epoch (flushed sums, counts, seconds) as plain numbers, for a checkpoint."""
        return {"names": self.names, "steps": self.steps, "clips": self.clips,
                "skipped_steps": self.skipped, "seconds": self.elapsed(),
                "sums": None if self.sums is None else self.sums.tolist()}

    def add(self, losses: dict[str, torch.Tensor], clips: int,
            skipped: torch.Tensor | None = None) -> None:
        """One step's terms, its clip count and whether the grad scaler skipped it."""
        if self.names is None:
            self.names = [k for k in losses if k != "total"] + ["total"]
        self.window.append(torch.stack([losses[k].float() for k in self.names]))
        if skipped is not None:
            self.skipped_window.append(skipped)
        self.steps += 1
        self.clips += clips

    def flush(self) -> torch.Tensor:
        """(n, terms) values of the window, added to the epoch sums; the window restarts."""
        values = torch.stack(self.window)
        self.window = []
        if self.skipped_window:
            self.skipped += int(torch.stack(self.skipped_window).sum())
            self.skipped_window = []
        total = values.double().sum(0).cpu()
        self.sums = total if self.sums is None else self.sums + total
        return values

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def speed(self) -> float:
        return self.clips / max(self.elapsed(), 1e-9)

    def record(self, epoch: int, lr: float) -> dict:
        """The epoch's metrics.json record: mean of every term over its iterations."""
        avg = (self.sums / max(self.steps, 1)).tolist()
        elapsed = self.elapsed()
        return {"epoch": epoch, "lr": lr, "seconds": elapsed,
                "clips_per_s": self.clips / max(elapsed, 1e-9), "skipped_steps": self.skipped,
                **dict(zip(self.names, avg))}


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
        # SOLVER.COMPILE: the forward and the loss through torch.compile (eager on failure);
        # the state (weights, BatchNorm statistics, centres) stays that of model / criterion
        compiled = bool(cfg.SOLVER.COMPILE)
        self._forward = compile_for_training(model, "the model") if compiled else model
        self._loss = compile_for_training(criterion, "the loss") if compiled else criterion
        self.amp_dtype, use_scaler = amp_settings(cfg, device, log=True)
        self.scaler = torch.amp.GradScaler(
            device.type, init_scale=cfg.SOLVER.GRAD_SCALER_INIT_SCALE,
            growth_interval=cfg.SOLVER.GRAD_SCALER_GROWTH_INTERVAL, enabled=use_scaler)
        self.epoch = 0          # completed epochs
        self.iteration = 0      # iterations done inside epoch ``self.epoch + 1`` (interrupted)
        self.best_r1 = -1.0
        self.recorder = RunRecorder(run_dir)
        self._stop_signal: int | None = None
        self._evaluating = False
        self._saving = False                       # a checkpoint is being written
        self._second_signal: int | None = None     # a second signal during that write
        self._signal_log = SignalSafeLog(logger)   # what the signal handler logs
        self._epoch_meter: _EpochMeter | None = None   # the epoch being trained
        self._resumed_meter: dict | None = None        # an interrupted epoch's partial sums
        self.last_step_skipped: torch.Tensor | None = None   # see _step_optimizers

    @classmethod
    def from_config(cls, cfg: CfgNode, model: nn.Module, loaders: tuple, dataset: Any,
                    device: torch.device, run_dir: str | None) -> Trainer:
        """The Trainer of a config: criterion (``layers.make_loss``), optimizer, center-loss
        optimizer and schedule (``solver``) for ``model`` (on ``device``, possibly
        DDP-wrapped); the other arguments as for the constructor. What the Trainer reads of
        ``dataset``: ``num_train_pids`` and ``attr_lens`` (the losses' identity and attribute
        class counts) and, to evaluate with attributes, ``attr_names``."""
        criterion = make_loss(cfg, dataset.num_train_pids, dataset.attr_lens,
                              feat_dim=unwrap(model).feat_dim).to(device)
        optimizer = make_optimizer(cfg, unwrap(model))
        return cls(cfg, model, criterion, optimizer, make_scheduler(cfg, optimizer), loaders,
                   dataset, device, run_dir, make_center_optimizer(cfg, criterion))

    # ------------------------------------------------------------------ state
    @property
    def bare_model(self) -> nn.Module:
        """The model without its DistributedDataParallel wrapper."""
        return unwrap(self.model)

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
            "history": self.recorder.state(),
            "partial_epoch": (self._epoch_meter.state() if self.iteration and
                              self._epoch_meter is not None else None),
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
        load_model_weights(self.bare_model, state["model"], source=f"checkpoint '{path}'")
        self.criterion.load_state_dict(state["criterion"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self._load_scaler(state.get("scaler") or {}, path)
        if self.center_optimizer is not None and "center_optimizer" in state:
            self.center_optimizer.load_state_dict(state["center_optimizer"])
        self.epoch = int(state["epoch"])
        self.iteration = int(state["iteration"])
        self.best_r1 = float(state["best_r1"])
        self.recorder.load_state(state["history"])
        self._resumed_meter = state.get("partial_epoch")
        restore_rng_state(state["rng"])
        logger.info("Resumed from %s: %d epochs done%s.", path, self.epoch,
                    f" and {self.iteration} iterations of the next" if self.iteration else "")

    def _load_scaler(self, scaler_state: dict, path: str) -> None:
        """The grad scaler's state of a checkpoint; one without any (written in float32 or
        bfloat16, where the scaler is off) starts this run's float16 scaler afresh."""
        if not self.scaler.is_enabled():
            return
        if scaler_state:
            self.scaler.load_state_dict(scaler_state)
        else:
            logger.info("%s was written without a float16 grad scaler (float32 or bfloat16 "
                        "training): the scaler starts afresh at scale %g.", path,
                        self.scaler.get_scale())

    def save(self, name: str) -> str | None:
        """Write the full checkpoint ``<run_dir>/<name>.pth`` (rank 0) atomically."""
        if self.checkpointer is None:
            return None
        self._saving = True
        try:
            path = self.checkpointer.save(name, self.state_dict())
        finally:
            self._saving = False
        logger.info("Saved checkpoint %s", path)
        if self._second_signal is not None:
            raise Interrupted(f"Stopped by a second signal ({self._second_signal}) once the "
                              f"checkpoint being written was complete ({path}). Continue with "
                              "--resume.", self._second_signal, checkpoint=False)
        return path

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, epoch: int) -> dict | None:
        """Evaluate on rank 0 (other ranks wait); record, log and keep the best rank-1 model."""
        results, error = None, None
        self._evaluating = True
        try:
            if is_main_process():
                try:
                    results = self._evaluate_and_keep_best(epoch)
                except (Exception, Interrupted) as e:  # noqa: BLE001 - re-raised below
                    error = e
            # instead of a barrier: the others learn whether rank 0's evaluation failed
            failed = max_across_ranks(int(error is not None), self.device)
        finally:
            self._evaluating = False
        if error is not None:
            raise error
        if failed:
            raise RuntimeError(f"The evaluation after epoch {epoch} failed on process 0 (its "
                               "error is in its output): this process stops too.")
        return results

    def _evaluate_and_keep_best(self, epoch: int) -> dict:
        results = evaluate(self.bare_model, self.query_loader, self.gallery_loader, self.device,
                           **evaluation_kwargs(self.cfg, self.dataset, self.device,
                                               evaluation_dtype(self.cfg, self.device)))
        self.recorder.evaluation(
            epoch, results, f"Validation results, epoch {epoch} ({results['seconds']:.1f} s, "
                            f"{results['clips_per_s']:.1f} clips/s)")
        if epoch > 0 and results["R1"] > self.best_r1 and self.run_dir:
            self.best_r1 = results["R1"]
            # Like the original's rank1_<r1>_checkpoint_ep<e>.pth (named by R1 only).
            path = os.path.join(self.run_dir, best_checkpoint_name(results["R1"], epoch))
            atomic_save(self.bare_model.state_dict(), path)
            logger.info("New best rank-1 %.2f%%: saved %s", 100 * results["R1"], path)
        return results

    # ------------------------------------------------------------------ training
    def _handle_signal(self, signum, frame) -> None:  # noqa: ARG002
        if self._stop_signal is not None and self._saving:
            # torch.save cannot be interrupted from Python (its C++ zip writer fails, and the
            # process may hang): the write, a few seconds, finishes first
            self._second_signal = signum
            return
        if self._stop_signal is not None:   # second signal: stop now
            raise Interrupted(f"Stopped at once by a second signal ({signum}); no checkpoint "
                              "was written after the last one. Continue with --resume.", signum,
                              checkpoint=False)
        self._stop_signal = signum
        if self._evaluating:
            self._signal_log.warning("Received signal %d during the evaluation: it finishes "
                                     "first, then a checkpoint is saved and the run stops (a "
                                     "second signal stops at once).", signum)
        else:
            self._signal_log.warning("Received signal %d: finishing this iteration, then "
                                     "saving a checkpoint (a second signal stops at once).",
                                     signum)

    def _stop_if_signalled(self, epoch: int, it: int) -> None:
        """After a signal: write the interruption checkpoint and raise :class:`Interrupted`."""
        if self._stop_signal is None:
            return
        self.save("interrupted")
        where = f"at epoch {epoch}, iteration {it}" if it else f"after epoch {epoch}"
        raise Interrupted(f"Stopped by signal {self._stop_signal} {where}; continue with "
                          "--resume.", self._stop_signal)

    def _agree_on_stop(self) -> None:
        """Under torchrun, a signal seen by any process stops every process at this iteration
        (each would otherwise stop at its own and leave the others blocked in the next
        collective)."""
        if get_world_size() > 1:
            signum = max_across_ranks(self._stop_signal or 0, self.device)
            if signum and self._stop_signal is None:
                self._stop_signal = signum

    def train(self) -> dict | None:
        """Run the remaining epochs; returns the last evaluation results (rank 0)."""
        with self._signal_log:   # what the signal handler logs (see SignalSafeLog)
            previous = {s: signal.signal(s, self._handle_signal)
                        for s in (signal.SIGINT, signal.SIGTERM)}
            try:
                return self._train_epochs()
            finally:
                for s, h in previous.items():
                    signal.signal(s, h)
                self.recorder.close()

    def _train_epochs(self) -> dict | None:
        cfg = self.cfg
        max_epochs = cfg.SOLVER.MAX_EPOCHS
        results = None
        if self.epoch >= max_epochs:
            logger.info("All %d epochs (SOLVER.MAX_EPOCHS) are done: nothing to train. Raise "
                        "SOLVER.MAX_EPOCHS to continue training.", max_epochs)
        elif hasattr(self.criterion, "formula"):     # the criterion's own terms and weights
            logger.info("Loss: %s (the logged terms are weighted)", self.criterion.formula())
        if cfg.SOLVER.EVAL_BEFORE_TRAIN and self.epoch == 0 and self.iteration == 0:
            results = self.evaluate(0)
        while self.epoch < max_epochs:
            epoch = self.epoch + 1
            if self.iteration == 0:
                self.scheduler.step()   # epoch e trains with BASE_LR * factor(e)
            self._train_epoch(epoch)
            self.epoch, self.iteration = epoch, 0
            if epoch % cfg.SOLVER.EVAL_PERIOD == 0 or epoch == max_epochs:
                results = self._evaluate_or_save(epoch)
            if epoch % cfg.SOLVER.CHECKPOINT_PERIOD == 0 or epoch == max_epochs:
                self.save(f"checkpoint_ep{epoch}")
            if epoch < max_epochs:
                self._stop_if_signalled(epoch, 0)
        return results

    def _evaluate_or_save(self, epoch: int) -> dict | None:
        try:
            return self.evaluate(epoch)
        except Exception:   # (not a second signal: Interrupted stops at once, no checkpoint)
            # keep the trained epoch: --resume continues after it
            logger.error("Evaluation after epoch %d failed; saving the epoch's checkpoint "
                         "before stopping.", epoch)
            self.save(f"checkpoint_ep{epoch}")
            raise

    def run_step(self, batch: tuple, timer: Timer = _no_timer) -> dict[str, torch.Tensor]:
        """One training iteration: forward, criterion, backward and optimizer step(s).

        Args:
            batch: a train-loader batch ``(clips (B, T, 3, H, W), pids (B,), camids (B,),
                attrs)`` (attrs: "bce" a list of 2 (B, A_k) tensors, "mce" (B, n_attr)).
            timer: ``timer(phase)`` gives a context manager around each phase ("to_device",
                "forward", "loss", "backward", "optimizer"); the benchmark times with it.

        Returns:
            The criterion's terms and ``total``, detached (on the device; no host sync).
        """
        clips, pids, _camids, attrs = batch
        with timer("to_device"):
            clips = clips.to(self.device, non_blocking=True)
            pids = pids.to(self.device, non_blocking=True)
            attrs = ([a.to(self.device, non_blocking=True) for a in attrs]
                     if isinstance(attrs, (list, tuple)) else attrs.to(self.device))
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                            enabled=self.amp_dtype is not None):
            with timer("forward"):
                outputs = self._forward(clips)
            with timer("loss"):
                losses = self._loss(outputs, pids, attrs)
        with timer("backward"):
            self.optimizer.zero_grad(set_to_none=True)
            if self.center_optimizer is not None:
                self.center_optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(losses["total"]).backward()
        with timer("optimizer"):
            self.last_step_skipped = self._step_optimizers()
        return {k: v.detach() for k, v in losses.items()}

    def _step_optimizers(self) -> torch.Tensor | None:
        """The optimizer step(s) through the grad scaler; returns a 0-d bool tensor on the
        device, True when the scaler skipped the step (float16 gradients with an Inf or NaN;
        the scale is then lowered), or None without a scaler. No host sync of its own.

        With the centre loss the two optimizers step together or not at all: an overflow in
        either's gradients skips both (the scaler alone would judge each on its own), and under
        torchrun the centres' gradients are averaged across processes first, as DDP averages
        the model's (each process would otherwise move its own copy of the centres). The centre
        optimizer's own step undoes the centre-loss weight (``solver.CenterSGD``).
        """
        scaler = self.scaler
        optimizers = [self.optimizer]
        if self.center_optimizer is not None:
            optimizers.append(self.center_optimizer)
            if get_world_size() > 1:
                for g in [p.grad for group in self.center_optimizer.param_groups
                          for p in group["params"] if p.grad is not None]:
                    dist.all_reduce(g)
                    g.div_(get_world_size())
            if scaler.is_enabled():
                for opt in optimizers:
                    scaler.unscale_(opt)
                flags = [f for opt in optimizers
                         for f in scaler._found_inf_per_device(opt).values()]
                found = torch.stack(flags).amax()
                for f in flags:
                    f.copy_(found)
        for opt in optimizers:
            scaler.step(opt)
        skipped = None
        if scaler.is_enabled():
            skipped = torch.stack(list(scaler._found_inf_per_device(self.optimizer).values())
                                  ).amax() > 0
        scaler.update()
        return skipped

    def _start_epoch(self, epoch: int) -> int:
        """Set the samplers' epoch (and start batch when resuming); returns batches to skip."""
        loader = self.train_loader
        sampler = getattr(loader, "batch_sampler", None)
        for obj in (sampler, getattr(loader, "sampler", None)):
            if hasattr(obj, "set_epoch"):
                obj.set_epoch(epoch)
        if self.iteration and hasattr(sampler, "set_start"):
            sampler.set_start(self.iteration)
            return 0
        return self.iteration   # the loader cannot start mid-epoch: skip the done batches

    def _train_epoch(self, epoch: int) -> None:
        self.model.train()
        skip = self._start_epoch(epoch)
        num_iters = len(self.train_loader)
        lr = self.optimizer.param_groups[0]["lr"]
        meter = self._epoch_meter = _EpochMeter(self._resumed_meter if self.iteration else None)
        self._resumed_meter = None
        bar = tqdm(total=num_iters, initial=self.iteration,
                   desc=f"epoch {epoch}/{self.cfg.SOLVER.MAX_EPOCHS}",
                   disable=None if is_main_process() else True, leave=False, dynamic_ncols=True)
        for batch in self.train_loader:
            if skip:
                skip -= 1
                continue
            meter.add(self.run_step(batch), batch[0].shape[0] * get_world_size(),
                      self.last_step_skipped)
            self.iteration += 1
            bar.update(1)
            it = self.iteration
            last = it == num_iters
            self._agree_on_stop()
            if it % self.cfg.SOLVER.LOG_PERIOD == 0 or last or self._stop_signal is not None:
                self._log_window(meter, bar, epoch, it, num_iters, lr)
            if self._stop_signal is not None:
                bar.close()
                self._stop_if_signalled(epoch, it)
        bar.close()
        if meter.skipped:
            logger.info("Epoch %d: the float16 grad scaler skipped %d of %d steps (gradient "
                        "overflow; the scale is now %g).", epoch, meter.skipped, meter.steps,
                        self.scaler.get_scale())
        if meter.sums is not None:
            self.recorder.epoch(meter.record(epoch, lr))

    def _log_window(self, meter: _EpochMeter, bar: tqdm, epoch: int, it: int, num_iters: int,
                    lr: float) -> None:
        values = meter.flush()                 # one host sync per window
        self._check_finite(values, meter.names, epoch, it, self.device)
        terms = " ".join(f"{k}={v:.3f}" for k, v in zip(meter.names, values.mean(0).tolist()))
        speed = meter.speed()
        bar.set_postfix_str(f"{terms} {speed:.1f} clips/s")
        if it % self.cfg.SOLVER.LOG_PERIOD == 0 or it == num_iters:
            self.recorder.iterations(epoch, it, num_iters, terms, lr, speed)

    @staticmethod
    def _check_finite(values: torch.Tensor, names: list[str], epoch: int, it: int,
                      device: torch.device) -> None:
        """Raise :class:`NonFiniteLossError` when a logged loss term is NaN or Inf, on every
        process together when one process's loss is (a collective under torchrun)."""
        finite = torch.isfinite(values)
        elsewhere = max_across_ranks(int(not bool(finite.all())), device)
        if bool(finite.all()):
            if elsewhere:
                raise NonFiniteLossError(
                    f"Non-finite loss on another process at epoch {epoch}, iteration <= {it}: "
                    "training stopped (see that process's error).")
            return
        bad = [names[j] for j in range(len(names)) if not bool(finite[:, j].all())]
        bad = [b for b in bad if b != "total"] or ["total"]
        raise NonFiniteLossError(
            f"Non-finite loss ({', '.join(bad)}) at epoch {epoch}, iteration <= {it}: training "
            "stopped and no checkpoint was written after it (the last good one is kept). Try a "
            "lower SOLVER.BASE_LR, or SOLVER.AMP_DTYPE bfloat16 / SOLVER.FP_16 False.")
