"""NIQE as BasicSR computes it, for checking `training.niqe` against a reference implementation.

Run in a scratch environment, not the toolkit's (BasicSR needs PyTorch and OpenCV):

    python -m venv /tmp/ref && /tmp/ref/bin/pip install torch opencv-python-headless scipy pillow
    pip download --no-deps basicsr==1.4.2 -d /tmp && tar xzf /tmp/basicsr-1.4.2.tar.gz -C /tmp
    /tmp/ref/bin/python benchmarks/niqe_reference.py --basicsr /tmp/basicsr-1.4.2 IMAGE… --out ref.json

Each image's NIQE by BasicSR 1.4.2's own `calculate_niqe(img, crop_border, input_order="HWC",
convert_to="y")` on its BGR array, as its tests call it. BasicSR's package `__init__` pulls in its whole
training stack, so only the four modules NIQE uses are loaded, from the unpacked source, unchanged. Writes
{image name: NIQE}; tests/data/niqe_reference.json was made this way (its "command" says how).
"""

import argparse
import importlib.util
import json
import sys
import types
from pathlib import Path

import numpy as np
from PIL import Image


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def basicsr_niqe(source: Path):
    root = source / "basicsr"
    for package in ("basicsr", "basicsr.metrics"):
        sys.modules[package] = types.ModuleType(package)
    registry = types.ModuleType("basicsr.utils.registry")
    registry.METRIC_REGISTRY = types.SimpleNamespace(register=lambda: (lambda f: f))
    sys.modules["basicsr.utils.registry"] = registry
    colour = _load("basicsr.utils.color_util", root / "utils" / "color_util.py")
    utils = types.ModuleType("basicsr.utils")
    utils.bgr2ycbcr = colour.bgr2ycbcr
    sys.modules["basicsr.utils"] = utils
    _load("basicsr.utils.matlab_functions", root / "utils" / "matlab_functions.py")
    _load("basicsr.metrics.metric_util", root / "metrics" / "metric_util.py")
    return _load("basicsr.metrics.niqe", root / "metrics" / "niqe.py").calculate_niqe


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--basicsr", type=Path, required=True, help="the unpacked basicsr-1.4.2 source distribution")
    p.add_argument("--crop-border", type=int, default=0)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("images", nargs="+", type=Path)
    args = p.parse_args()
    calculate_niqe = basicsr_niqe(args.basicsr)
    scores = {}
    for path in args.images:
        rgb = np.asarray(Image.open(path).convert("RGB"))
        scores[path.name] = float(calculate_niqe(rgb[..., ::-1], args.crop_border, input_order="HWC",
                                                 convert_to="y"))
        print(f"{path.name}: {scores[path.name]:.4f}", flush=True)
    args.out.write_text(json.dumps({"implementation": "BasicSR 1.4.2 calculate_niqe", "crop_border":
                                    args.crop_border, "niqe": scores}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
