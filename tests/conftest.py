"""Shared test fixtures."""

import logging
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.helpers import SHARED_DATA  # noqa: E402  (after the sys.path entry above)


@pytest.fixture
def shared_data() -> Path:
    """The real annotation files (../shared/data); skip when they are absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real annotation files not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _single_thread_env(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "2"))


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: one thread is as fast, and immune to a busy machine's thread contention."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _reset_reid_logger():
    """Undo setup_logger after each test so that later tests' caplog sees the "reid" records."""
    yield
    logger = logging.getLogger("reid")
    for h in list(logger.handlers):
        logger.removeHandler(h)
        h.close()
    logger.propagate = True
    logger.setLevel(logging.NOTSET)


@pytest.fixture(scope="session")
def tiny_mars(tmp_path_factory) -> Path:
    """A tiny synthetic MARS-format dataset (6 train ids, 32x16 frames) shared by the tests."""
    from tools.synthetic import write_synthetic_dataset

    root = tmp_path_factory.mktemp("data") / "mars"
    write_synthetic_dataset(root, fmt="mars", ids=12, tracklets=3, frames=6, size=(32, 16),
                            seed=1)
    return root


# Tests that train (a run of main_baseline, a Trainer's steps) or start processes take seconds
# to minutes each: they are marked "slow", so `python -m pytest -q -m "not slow"` leaves them
# out while iterating (CI runs everything).
_SLOW_CALLS = ("main_baseline.main(", "subprocess.", "torchrun(", "_trainer(", "good_run(",
               "train_demo(", "Popen(")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: trains a model or starts a process (seconds to "
                                       "minutes); deselect with -m 'not slow'")


def pytest_collection_modifyitems(config, items):
    import inspect

    for item in items:
        try:
            source = inspect.getsource(item.function)
        except (OSError, TypeError):
            continue
        if any(call in source for call in _SLOW_CALLS):
            item.add_marker(pytest.mark.slow)
