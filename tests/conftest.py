"""Shared fixtures: a small demo set, tiny image folders, the real skin set when it is present."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
MAX_WORKERS = 4  # each worker holds its own TensorFlow; more buys little on tiny models


def pytest_xdist_auto_num_workers(config) -> int:
    """`-n auto`: one worker per core, at most MAX_WORKERS."""
    return max(1, min(MAX_WORKERS, len(os.sched_getaffinity(0))))


if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    # Workers share the cores: each TensorFlow gets its share of threads rather than one per
    # core each, which oversubscribes the machine (set before TensorFlow is imported; the
    # subprocesses tests start inherit it).
    share = len(os.sched_getaffinity(0)) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", str(max(1, share)))


def pytest_collection_finish(session) -> None:
    """Move what collection left alive (TensorFlow, Keras and the test modules: about half a
    million objects) out of the garbage collector's sight: every Keras clear_session() runs a
    full gc.collect(), and the automatic ones visit the oldest generation too, each walking all of
    TensorFlow, which never becomes garbage (0.2 s to 1 s a collection, a minute a suite run)."""
    gc.freeze()


REPO = Path(__file__).resolve().parents[1]
SKIN_DATA = REPO.parent / "shared" / "data" / "skin_cancer"


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory) -> Path:
    """A smaller demo set (same generator as the built-in one), written once per test session."""
    from keras_ganaug.data.demo import make_demo_data

    counts = {"train": {"benign": 48, "malignant": 24}, "test": {"benign": 12, "malignant": 12}}
    return make_demo_data(tmp_path_factory.mktemp("demo") / "demo", seed=0, counts=counts, size=32)


@pytest.fixture
def skin_root() -> Path:
    if not SKIN_DATA.is_dir():
        pytest.skip("../shared/data/skin_cancer is absent")
    return SKIN_DATA


def run_script(*args: str, cwd: Path = REPO, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run a top-level script or `-c` snippet in a fresh interpreter; returns the finished process."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
