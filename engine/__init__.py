"""Training and evaluation engine: run set-up, the Trainer, dense evaluation."""

from utils.errors import run_cli

from .defaults import CONFIG_KEY, default_argument_parser, default_setup, parse_command_line
from .evaluator import evaluate, extract_features
from .trainer import (
           Interrupted,
           NonFiniteLossError,
           Trainer,
           convert_sync_bn,
           run_evaluation,
           wrap_distributed,
)

__all__ = ["CONFIG_KEY", "default_argument_parser", "default_setup", "parse_command_line",
           "run_cli", "evaluate", "extract_features",
           "Trainer", "Interrupted", "NonFiniteLossError", "run_evaluation", "convert_sync_bn",
           "wrap_distributed"]
