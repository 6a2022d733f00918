"""What a reader needs to reproduce a run: Python, torch, CUDA and the git revision."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import torch


def git_revision() -> str:
    """The project's git revision (with "-dirty" when it has uncommitted changes), or "unknown"."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (rev + ("-dirty" if dirty else "")) if rev else "unknown"


def collect_env_info() -> str:
    """A short multi-line description of the software and hardware of this run."""
    lines = [
        f"python: {sys.version.split()[0]} ({platform.platform()})",
        f"torch: {torch.__version__}",
        f"CUDA available: {torch.cuda.is_available()}",
        f"CUDA (torch built with): {torch.version.cuda}",
        f"CPU threads: {torch.get_num_threads()}",
        f"git revision: {git_revision()}",
    ]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            lines.append(f"GPU {i}: {torch.cuda.get_device_name(i)}")
    try:
        import torchvision

        lines.insert(2, f"torchvision: {torchvision.__version__}")
    except ImportError:
        pass
    return "\n".join(lines)
