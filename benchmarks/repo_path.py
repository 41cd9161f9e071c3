"""Imported first by every benchmark script: the repository's packages become importable from a plain
checkout (`python benchmarks/latency.py` from anywhere, installed or not, as on the GPU machines we borrow),
and importing `core` keeps TensorFlow's start-up lines off the terminal (`core.cli`)."""

import importlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
importlib.import_module("core")
