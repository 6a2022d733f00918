"""Training and evaluation engine: run set-up, the Trainer, dense evaluation."""

from .defaults import default_argument_parser, default_setup, run_cli
from .evaluator import evaluate, extract_features
from .trainer import Interrupted, NonFiniteLossError, Trainer, run_evaluation

__all__ = ["default_argument_parser", "default_setup", "run_cli", "evaluate", "extract_features",
           "Trainer", "Interrupted", "NonFiniteLossError", "run_evaluation"]
