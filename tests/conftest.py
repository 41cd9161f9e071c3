"""Fixtures shared by the tests (their helpers: tests/helpers.py), and the `slow` marker."""

from pathlib import Path

import numpy as np
import pytest

from tests.helpers import repository_with, tiny_run_args

# Tests that use a trained run (and so an export, a server…) are slow: `pytest -m "not slow"` skips them.
_SLOW_FIXTURES = {"trained_run"}


def pytest_collection_modifyitems(items):
    for item in items:
        if _SLOW_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.slow)




@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One demo-data cache for the whole session (preparing it takes a few seconds)."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, cache_dir) -> Path:
    """A tiny training run (3 steps), shared by the export and serving tests."""
    from training.config import config_from_args
    from training.run import train
    out = tmp_path_factory.mktemp("trained") / "run"
    train(config_from_args(tiny_run_args(out, cache_dir, "--epochs", "1", "--steps-per-epoch", "1")))
    return out


@pytest.fixture
def repository(exported, tmp_path):
    """A model folder of its own (tmp_path/models/srgan) whose version 1 is the exported one."""
    return repository_with(exported[0], tmp_path / "models")


@pytest.fixture(scope="session")
def exported(trained_run):
    """Version 1 of a model repository exported from `trained_run`, with its parity report. Published without
    the deployment gate (a 3-step model is far below bicubic): tests/test_gate.py tests the gate."""
    from export.run import ExportConfig, export
    return export(ExportConfig(run_dir=trained_run, repository=trained_run.parent / "models", bless=False))
