"""Utilities: metrics, logging, checkpoints, benchmarks and pictures (import the submodules)."""
