import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]

# Tests that use a trained run (and so an export, a server…) are slow: `pytest -m "not slow"` skips them.
_SLOW_FIXTURES = {"trained_run"}


def pytest_collection_modifyitems(items):
    for item in items:
        if _SLOW_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.slow)

# A generator and discriminator small enough for a CPU test, the article's layout otherwise.
TINY_MODEL = ["--channels", "8", "--residual-blocks", "2", "--disc-channels", "4", "--disc-dense", "8"]


def tiny_run_args(out_dir: Path, cache_dir: Path, *extra: str) -> list[str]:
    """`python -m training.run` arguments for a run of seconds: tiny networks, 32×32 crops, no XLA."""
    return [*TINY_MODEL, "--crop-size", "32", "--batch-size", "2", "--pretrain-steps", "2",
            "--epochs", "2", "--steps-per-epoch", "2", "--checkpoint-every", "1", "--no-xla",
            "--content-loss", "mse", "--seed", "1", "--run-dir", str(out_dir), "--cache-dir", str(cache_dir),
            *extra]


def run_module(module: str, *args: str, env: dict | None = None, timeout: float = 300,
               **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})}, **kwargs)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One demo-data cache for the whole session (preparing it takes a few seconds)."""
    return tmp_path_factory.mktemp("cache")


def write_image(path: Path, array: np.ndarray, **save_kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **save_kwargs)
    return path


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


@pytest.fixture(scope="session")
def exported(trained_run):
    """Version 1 of a model repository exported from `trained_run`, with its parity report."""
    from export.to_onnx import ExportConfig, export
    return export(ExportConfig(run_dir=trained_run, repository=trained_run.parent / "models"))
