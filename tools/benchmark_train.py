"""The ``train`` benchmark of ``python -m tools.benchmark``: the paper model's training step in
float32, bfloat16 and float16 autocast, channels_last on and off, compiled or not, side by side.

Each variant is a set of config overrides applied to a clone of the benchmark's frozen config
(:data:`TRAIN_VARIANTS`): the trainer reads them itself (precision: SOLVER.FP_16, AMP_DTYPE on
CUDA, CPU_PRECISION on a CPU, through :func:`engine.amp_settings`; MODEL.CHANNELS_LAST;
SOLVER.COMPILE), so the benchmark times what a training run with those keys runs. Every
variant gets its own :class:`engine.Trainer` (the same initial weights) and the steps are
interleaved, one step of each variant in turn (A B C A B C ...), so that drift of the machine's
speed hits all of them alike. One step of each is a warm-up (for a compiled variant: the
compilation) and is not counted; the speed-ups are against float32 NCHW (``fp32_nchw``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
from yacs.config import CfgNode

from data import make_data_loaders
from engine import Trainer
from tools.benchmark_pipeline import (
    build_trainer,
    compiled_graphs,
    dtype_name,
    forever,
    optimizer_kernels,
    phase_timer,
    with_overrides,
)
from tools.synthetic import ensure_dataset

TRAIN_PHASES = ("data_wait", "to_device", "forward", "loss", "backward", "optimizer")


@dataclass(frozen=True)
class Variant:
    """One configuration of the training step.

    Attributes:
        overrides: dotted config keys and values, applied to a clone of the benchmark config.
        precision: the autocast dtype these keys ask for ("float32": none), or None (the
            config's own choice); the report says whether the trainer ran it.
        speedups: False builds the step without the speed-ups that are not config keys
            (``foreach`` optimizer kernels, no cuDNN autotuner), see
            :func:`tools.benchmark_pipeline.build_trainer`.
    """

    overrides: dict = field(default_factory=dict)
    precision: str | None = None
    speedups: bool = True


def _precision(dtype: str | None) -> dict:
    """Config keys of a precision: FP_16 off for float32; else FP_16 on, AMP_DTYPE (read on
    CUDA) and CPU_PRECISION (read on a CPU) both ``dtype``, so the variant means the same on
    either device."""
    if dtype == "float32":
        return {"SOLVER.FP_16": False}
    return {"SOLVER.FP_16": True, "SOLVER.AMP_DTYPE": dtype, "SOLVER.CPU_PRECISION": dtype}


def _variant(dtype: str, channels_last: bool, compile_: bool = False) -> Variant:
    return Variant({**_precision(dtype), "MODEL.CHANNELS_LAST": channels_last,
                    "SOLVER.COMPILE": compile_}, precision=dtype)


TRAIN_VARIANTS: dict[str, Variant] = {
    "fp32_nchw": _variant("float32", False),
    "fp32": _variant("float32", True),
    "bf16_nchw": _variant("bfloat16", False),
    "bf16": _variant("bfloat16", True),
    "fp16_nchw": _variant("float16", False),
    "fp16": _variant("float16", True),
    "fp32_compile": _variant("float32", True, True),
    "bf16_compile": _variant("bfloat16", True, True),
    "fp16_compile": _variant("float16", True, True),
    # the step before the speed-ups: NCHW, foreach Adam, no cuDNN autotuner; float32 on a CPU,
    # the config's SOLVER.FP_16 / AMP_DTYPE on CUDA (the original's apex fp16 there)
    "no_speedups": Variant({"MODEL.CHANNELS_LAST": False, "SOLVER.CPU_PRECISION": "float32",
                            "SOLVER.COMPILE": False}, speedups=False),
}
BASELINE = "fp32_nchw"
# float16 autocast on a CPU is slower than float32 (no native float16 arithmetic): CPU runs
# leave it out unless asked for; on CUDA float16 (with the grad scaler) is the default precision.
DEFAULT_VARIANTS: dict[str, tuple[str, ...]] = {
    "cpu": ("fp32_nchw", "fp32", "bf16_nchw", "bf16", "fp32_compile", "bf16_compile"),
    "cuda": ("fp32_nchw", "fp16_nchw", "fp16", "bf16_nchw", "bf16", "fp16_compile"),
}
DEFAULT_STEPS = {"cpu": 3, "cuda": 20}


def default_variants(device: torch.device) -> list[str]:
    """The variants a ``train`` run times when none are chosen (``--variants``)."""
    return list(DEFAULT_VARIANTS.get(device.type, DEFAULT_VARIANTS["cpu"]))


def parse_variants(text: str) -> list[str] | None:
    """``--variants``: comma-separated names of :data:`TRAIN_VARIANTS` in the order to run them,
    or "all" (every one); "" gives None (the device's :func:`default_variants`). Raises
    ValueError naming an unknown variant."""
    text = text.strip()
    if not text:
        return None
    if text == "all":
        return list(TRAIN_VARIANTS)
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in TRAIN_VARIANTS]
    if unknown or not names:
        raise ValueError(f"unknown train variant(s) {', '.join(map(repr, unknown)) or repr(text)};"
                         f" choose from {', '.join(TRAIN_VARIANTS)} or all")
    return list(dict.fromkeys(names))


class _VariantRun:
    """A variant's trainer and the timings of its steps."""

    def __init__(self, name: str, variant: Variant, cfg: CfgNode, device: torch.device,
                 loader: Iterable, dataset) -> None:
        self.name, self.variant, self.device = name, variant, device
        self.cfg = with_overrides(cfg, variant.overrides)
        torch.manual_seed(0)                        # the same initial weights in every variant
        self.trainer: Trainer = build_trainer(self.cfg, device, loader, dataset,
                                              variant.speedups)
        self.trainer.model.train()
        # the autotuner setting of this variant's training run (build_trainer set it; it is
        # global, so it is set again before each of this variant's steps)
        self.cudnn = torch.backends.cudnn.benchmark
        self.phases: dict[str, float] = {}
        self.steps_s: list[float] = []
        self.clips = 0
        self.first_step_s = 0.0
        self.first_step_graphs = 0
        self.timed_graphs = 0

    def step(self, batches: Iterator, warmup: bool) -> None:
        """One timed training step (``data_wait`` for the batch, then run_step's phases)."""
        torch.backends.cudnn.benchmark = self.cudnn
        times: dict[str, float] = {}
        timer = phase_timer(times, self.device)
        graphs = compiled_graphs()
        with timer("data_wait"):
            batch = next(batches)
        self.trainer.run_step(batch, timer)
        total = sum(times.values())
        graphs = compiled_graphs() - graphs
        if warmup:
            self.first_step_s, self.first_step_graphs = total, graphs
            return
        self.steps_s.append(total)
        self.timed_graphs += graphs
        self.clips += batch[0].shape[0]
        for k, v in times.items():
            self.phases[k] = self.phases.get(k, 0.0) + v

    def result(self) -> dict:
        """The variant's figures (see :func:`bench_train`)."""
        trainer, n = self.trainer, len(self.steps_s)
        total = sum(self.steps_s)
        step_s = total / n
        amp = dtype_name(trainer.amp_dtype)
        out = {
            "overrides": dict(self.variant.overrides), "amp_dtype": amp,
            "precision_as_asked": self.variant.precision in (None, amp),
            "grad_scaler": trainer.scaler.is_enabled(),
            "channels_last": bool(getattr(trainer.bare_model, "channels_last", False)),
            "compile": bool(self.cfg.SOLVER.COMPILE),
            "optimizer_kernels": optimizer_kernels(trainer.optimizer),
            "cudnn_benchmark": self.cudnn,
            "steps": n, "clips": self.clips, "step_s": step_s, "steps_s": list(self.steps_s),
            "clips_per_s": self.clips / total,
            "split_s": {k: self.phases.get(k, 0.0) / n for k in TRAIN_PHASES},
            "outside_compute_fraction": (total - self.phases.get("forward", 0.0)
                                         - self.phases.get("backward", 0.0)) / total,
            "first_step_s": self.first_step_s,
            "compiled_graphs": self.first_step_graphs,
            "timed_compilations": self.timed_graphs,
        }
        if self.cfg.SOLVER.COMPILE:
            # the one-off compilation: the first compiled step's time over a compiled step's
            out["compile_s"] = self.first_step_s - step_s
        return out


def bench_train(cfg: CfgNode, device: torch.device, steps: int = 3,
                variants: Sequence[str] | None = None) -> dict:
    """Throughput of the real training step (:meth:`engine.Trainer.run_step`) per variant.

    The train loader of the config's dataset feeds every variant (one loader, batches in
    turn). Every phase is timed with a device sync on both sides: ``data_wait`` (``next`` on
    the loader) and the run_step phases of :data:`TRAIN_PHASES`. After one warm-up step of
    each variant, ``steps`` rounds run one step of each variant in the order given.

    Args:
        cfg: the benchmark's frozen config; each variant's overrides apply to a clone.
        device: the training device.
        steps: timed steps per variant.
        variants: names of :data:`TRAIN_VARIANTS` (None: :func:`default_variants`).

    Returns:
        dict with ``batch`` (SOLVER.SEQS_PER_BATCH), ``steps``, ``order`` (the variants in the
        order each round ran them), ``baseline`` (``fp32_nchw`` when timed, else the first
        variant) and ``variants``: ``{name: {...}}`` with ``overrides``, ``amp_dtype`` (the
        autocast dtype run_step used, "float32" without autocast), ``precision_as_asked``
        (False when the trainer ran another precision than the overrides ask for),
        ``grad_scaler``, ``channels_last``, ``compile`` (SOLVER.COMPILE), ``optimizer_kernels``
        ("fused", "foreach" or "default"), ``cudnn_benchmark``, ``steps``, ``clips`` (of the
        timed steps), ``step_s`` (mean seconds per timed step, the sum of ``split_s``),
        ``steps_s`` (each timed step), ``clips_per_s`` (clips / timed seconds), ``split_s``
        (mean seconds per phase), ``outside_compute_fraction`` (share outside forward +
        backward), ``first_step_s`` (the warm-up step), ``compiled_graphs`` (graphs
        torch.compile built in the first step: 0 when nothing was compiled),
        ``timed_compilations`` (graphs compiled during the timed steps: recompilations),
        ``speedup`` (the baseline's step_s over this one's) and, for SOLVER.COMPILE variants,
        ``compile_s`` (first_step_s - step_s: the one-off compilation).
    """
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    names = list(variants or default_variants(device))
    ensure_dataset(cfg)
    train_loader, _, _, dataset = make_data_loaders(cfg)
    batches = forever(train_loader)
    saved = torch.backends.cudnn.benchmark
    try:
        runs = [_VariantRun(n, TRAIN_VARIANTS[n], cfg, device, train_loader, dataset)
                for n in names]
        for step in range(steps + 1):        # step 0: warm-up (and compilation) of every variant
            for run in runs:
                run.step(batches, warmup=step == 0)
    finally:
        torch.backends.cudnn.benchmark = saved
    results = {run.name: run.result() for run in runs}
    baseline = BASELINE if BASELINE in results else names[0]
    for r in results.values():
        r["speedup"] = results[baseline]["step_s"] / r["step_s"]
    return {"batch": cfg.SOLVER.SEQS_PER_BATCH, "steps": steps, "order": names,
            "baseline": baseline, "variants": results}


def format_train_table(res: dict) -> str:
    """The ``train`` report as a table: one row per variant (precision, layout, compiled,
    clips/s, s/step, speed-up over the baseline, one-off compile seconds), then a note for each
    variant whose trainer did not run what its overrides ask for."""
    head = (f"  {'variant':<14}{'precision':<11}{'layout':<8}{'compiled':<10}{'clips/s':>9}"
            f"{'s/step':>9}{'speed-up':>10}{'compile s':>11}")
    lines = [f"  batch {res['batch']}, {res['steps']} timed steps per variant, interleaved; "
             f"speed-up over {res['baseline']}", head]
    notes = []
    for name, v in res["variants"].items():
        compiled = ("yes" if v["compiled_graphs"] else "no graph") if v["compile"] else "no"
        compile_s = f"{v['compile_s']:.1f}" if "compile_s" in v else "-"
        lines.append(f"  {name:<14}{v['amp_dtype']:<11}"
                     f"{'NHWC' if v['channels_last'] else 'NCHW':<8}{compiled:<10}"
                     f"{v['clips_per_s']:>9.3g}{v['step_s']:>9.3g}{v['speedup']:>9.2f}x"
                     f"{compile_s:>11}")
        if not v["precision_as_asked"]:
            notes.append(f"  note: {name} asks for {TRAIN_VARIANTS[name].precision} "
                         f"({_keys(v['overrides'])}) but the trainer ran {v['amp_dtype']}")
        if v["compile"] and not v["compiled_graphs"]:
            notes.append(f"  note: {name}: SOLVER.COMPILE True, but the step compiled no graph "
                         "(it ran uncompiled)")
        if v["timed_compilations"]:
            notes.append(f"  note: {name} compiled {v['timed_compilations']} graph(s) during "
                         "its timed steps (recompilation): its step time includes them")
    return "\n".join(lines + notes)


def _keys(overrides: dict) -> str:
    return " ".join(f"{k} {v}" for k, v in overrides.items() if k.startswith("SOLVER."))
