"""Utilities: metrics, re-ranking, logging, checkpoints, errors and pictures."""
