"""Training and evaluation engine: run set-up, the Trainer, dense evaluation, run records."""

from utils.errors import run_cli

from .compile import compile_for_training
from .defaults import (
    CONFIG_KEY,
    check_choices,
    default_argument_parser,
    default_setup,
    load_cfg,
    parse_command_line,
)
from .distributed import convert_sync_bn, unwrap, wrap_distributed
from .evaluator import evaluate, evaluation_kwargs, extract_features, run_evaluation
from .precision import amp_settings, configure_backends, evaluation_dtype
from .recorder import RunRecorder
from .trainer import Interrupted, NonFiniteLossError, Trainer

__all__ = ["CONFIG_KEY", "check_choices", "default_argument_parser", "default_setup",
           "load_cfg", "parse_command_line",
           "run_cli", "evaluate", "evaluation_kwargs", "extract_features", "run_evaluation",
           "amp_settings", "configure_backends", "evaluation_dtype", "RunRecorder", "Trainer",
           "Interrupted", "NonFiniteLossError", "convert_sync_bn", "unwrap", "wrap_distributed",
           "compile_for_training"]
