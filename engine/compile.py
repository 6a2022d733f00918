"""``torch.compile`` for evaluation (TEST.COMPILE) and training (SOLVER.COMPILE).

What both need:

- :class:`CompilerFiles`: inductor writes generated code and compiled libraries to its cache
  folder (``TORCHINDUCTOR_CACHE_DIR``, by default ``/tmp/torchinductor_<user>``, kept forever).
  Ours is a temporary folder per compiled callable, removed with it (or at exit).
- :class:`FallbackCompiled`: a compiled module that runs the module uncompiled, after one
  warning, when compilation fails (no C++ compiler for the CPU code, an operation the compiler
  cannot handle, ...), so that a missing tool chain costs speed, never the run.
- :func:`compile_for_training`: the training forward or the criterion through the compiler.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn as nn

logger = logging.getLogger("reid.compile")

_PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class CompilerFiles:
    """A temporary folder for the compiler's files, removed by :meth:`cleanup` (or when this
    object is garbage-collected, or at exit).

    torch reads ``TORCHINDUCTOR_CACHE_DIR`` whenever it writes or loads a compiled artefact, so
    every call that may compile runs inside :meth:`active`.
    """

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="reid-compile-",
                                                ignore_cleanup_errors=True)

    @property
    def path(self) -> str:
        """The folder."""
        return self._dir.name

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Inside the block ``TORCHINDUCTOR_CACHE_DIR`` is this folder (restored on exit)."""
        before = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = self.path
        try:
            yield
        finally:
            if before is None:
                os.environ.pop("TORCHINDUCTOR_CACHE_DIR", None)
            else:
                os.environ["TORCHINDUCTOR_CACHE_DIR"] = before

    def cleanup(self) -> None:
        """Remove the folder now."""
        self._dir.cleanup()


def _raised_by_the_project(error: BaseException) -> bool:
    """Whether ``error`` is an exception class of this project (a ``UserError`` about the input,
    the trainer's ``Interrupted`` after a signal, ...): raised by the model's own code, which the
    uncompiled module would raise too, so it is no compiler failure and propagates."""
    module = sys.modules.get(type(error).__module__)
    path = getattr(module, "__file__", None)
    return bool(path) and os.path.abspath(path).startswith(_PROJECT_ROOT + os.sep)


class FallbackCompiled:
    """``torch.compile(module)`` that falls back to ``module`` itself when compilation fails.

    A call runs the compiled module (the first call compiles it, tens of seconds on a CPU) with
    the compiler's files in a :class:`CompilerFiles` folder. When a call fails, except with one
    of this project's exceptions (see below), one warning names ``key`` and the error, and that
    call and every later one run ``module`` uncompiled. The project's own exceptions (e.g. a
    ``UserError`` about the input, the trainer's ``Interrupted``) come from the model's code,
    which the uncompiled module would run the same way: they propagate.

    Args:
        module: the module to compile (its parameters and state stay its own: the compiled
            module reads and updates them in place).
        what: what is compiled, for the warning ("the extraction", "the model", "the loss").
        key: the config key that asked for it ("TEST.COMPILE"), for the warning.
        inductor_config: ``torch._inductor.config`` settings patched around every call (where
            compilation happens), e.g. ``{"freezing": True}``. (``torch.compile``'s ``options``
            would not do for ``freezing``: torch 2.14 reads it outside their scope.) Precompiled
            headers are off: their folder is not the temporary one.
        **compile_kwargs: other ``torch.compile`` arguments (e.g. ``dynamic=False``).
    """

    def __init__(self, module: nn.Module, what: str, key: str, *,
                 inductor_config: dict[str, Any] | None = None, **compile_kwargs: Any) -> None:
        self.module = module
        self.what, self.key = what, key
        self.files = CompilerFiles()
        self.inductor_config = {"cpp_cache_precompile_headers": False, **(inductor_config or {})}
        self.failure: str | None = None   # the error that made it fall back
        self._compiled: Any = None
        try:
            with self.files.active():
                self._compiled = torch.compile(module, **compile_kwargs)
        except Exception as e:  # noqa: BLE001 - e.g. a Python version torch cannot compile
            self._fall_back(e)

    @property
    def compiled(self) -> bool:
        """Whether calls still go through the compiler (False after a fallback)."""
        return self.failure is None

    def _context(self) -> contextlib.AbstractContextManager:
        """The context of every compiled call (besides the files): the inductor settings."""
        from torch._inductor import config as inductor_config  # loads the compiler: on use

        return inductor_config.patch(**self.inductor_config)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """``module(*args, **kwargs)``, compiled (or uncompiled after a failure)."""
        if self.failure is None:
            try:
                with self.files.active(), self._context():
                    return self._compiled(*args, **kwargs)
            except Exception as e:  # noqa: BLE001 - a compiler failure: run uncompiled
                self._fall_back(e)
        return self.module(*args, **kwargs)

    def _fall_back(self, error: Exception) -> None:
        """Log the failure once and run uncompiled from now on; re-raise the project's own."""
        if _raised_by_the_project(error):
            raise error
        first = str(error).splitlines()[0] if str(error) else ""
        self.failure = f"{type(error).__name__}: {first}" if first else type(error).__name__
        logger.warning("%s: torch.compile failed (%s); %s runs uncompiled. Set %s False to "
                       "skip the attempt.", self.key, self.failure, self.what, self.key)
        self._compiled = None

    def __getattr__(self, name: str) -> Any:
        """Everything else is the module's (``state_dict``, ``parameters``, ``train``, ...)."""
        module = self.__dict__.get("module")
        if module is None or name.startswith("__"):
            raise AttributeError(name)
        return getattr(module, name)


class TrainingCompiled(FallbackCompiled):
    """:class:`FallbackCompiled` for a training forward: the backward graph is compiled with the
    forward (not lazily at the first ``backward()``), so that its compilation too writes to the
    temporary folder and a failure there falls back as well."""

    @contextlib.contextmanager
    def _context(self) -> Iterator[None]:
        from torch._functorch import config as functorch_config

        key = "force_non_lazy_backward_lowering"
        eager_backward = {key: True} if key in functorch_config.get_config_copy() else {}
        with super()._context(), functorch_config.patch(**eager_backward):
            yield


def compile_for_training(module: nn.Module, what: str) -> TrainingCompiled:
    """SOLVER.COMPILE: ``module`` through ``torch.compile`` (inductor, static shapes: a training
    run's batches have one shape) for training steps.

    The result is called like the module (``compiled(clips)`` -> the module's outputs, e.g. the
    train forward's ``(cls_score (B, C), global_feat (B, D), attr_logits)``; the criterion's
    ``compiled(outputs, pids, attrs)`` -> its dict of terms); gradients reach the module's own
    parameters and BatchNorm running statistics are updated in the module, exactly as the
    uncompiled call does (to float rounding). The first call compiles the forward and its
    backward. If compilation fails, one warning and every call runs ``module`` uncompiled.
    Attribute access other than the call (``state_dict()``, ``parameters()``, ``train()``,
    ...) goes to ``module``, so the checkpoint is the uncompiled module's.

    Args:
        module: the model (possibly DDP-wrapped) or the criterion.
        what: what it is, for the warning: "the model", "the loss".
    """
    return TrainingCompiled(module, what, "SOLVER.COMPILE", dynamic=False)
