"""Shared test setup: quiet TensorFlow, and caches/results kept out of the repository."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")

import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable  # noqa: E402

import pytest  # noqa: E402

REAL_HAM = Path(__file__).resolve().parents[2] / "shared" / "data" / "ham10000"


@pytest.fixture
def real_ham10000() -> Path:
    """The real HAM10000 copy beside the project; the test is skipped where it is absent."""
    if not (REAL_HAM / "HAM10000_metadata.csv").is_file():
        pytest.skip(f"real HAM10000 not found at {REAL_HAM}")
    return REAL_HAM


@pytest.fixture
def isolated_dirs(tmp_path, monkeypatch) -> Path:
    """Fresh cache and results folders for one test (the pipeline reads them from the env)."""
    monkeypatch.setenv("SKINLIB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("SKINLIB_RESULTS_DIR", str(tmp_path / "results"))
    return tmp_path


@pytest.fixture
def run_benchmark(tmp_path) -> Callable[..., subprocess.CompletedProcess]:
    """Run ``benchmarks/<script>`` on the smoke profile with this test's own step cache."""
    def run(script: str, *args: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "SKINLIB_CACHE_DIR": str(tmp_path / "cache")}
        path = Path(__file__).resolve().parent.parent / "benchmarks" / script
        return subprocess.run([sys.executable, str(path), "--profile", "smoke", *args], env=env, capture_output=True,
                              text=True, timeout=900)
    return run


LONG_TESTS_ENV = "SKINLIB_LONG_TESTS"


def pytest_collection_modifyitems(config, items) -> None:
    """Tests marked ``long`` (the tiny ``thesis`` grid, the mirrored thesis backbones) run
    only with ``SKINLIB_LONG_TESTS=1``: each takes well over ten CPU-minutes on 2 cores."""
    if os.environ.get(LONG_TESTS_ENV) == "1":
        return
    skip = pytest.mark.skip(reason=f"long test (over ten CPU-minutes on 2 cores): set {LONG_TESTS_ENV}=1 to run it")
    for item in items:
        if "long" in item.keywords:
            item.add_marker(skip)


GRID_TEST = "test_thesis_grid.py::test_thesis_profile_every_page_through_the_grid"


def pytest_collection_finish(session) -> None:
    """Start the tiny thesis grid in the background when its test is selected (see
    tests/test_thesis_grid.py): the rest of the suite runs on the core it leaves idle."""
    if session.config.option.collectonly:
        return
    for item in session.items:
        if item.nodeid.endswith(GRID_TEST) and not item.get_closest_marker("skip"):
            item.module.start_grid(session.config._tmp_path_factory.mktemp("thesis_grid"))


def pytest_sessionfinish(session) -> None:
    """A grid still running when the session ends (interrupted, -x) is killed with its jobs."""
    for item in session.items:
        if item.nodeid.endswith(GRID_TEST):
            grid = item.module.STARTED.get("grid")
            if grid is not None:
                grid.kill()
            return
