"""Parity, measured: the same inputs through every backend, compared in float and in uint8 space.

Backends: the Keras generator (the reference), the SavedModel loaded back from disk both eagerly and the way
TF Serving loads it (graph mode: restore op, init op; every signature, the encoded-image one included), ONNX
Runtime on CPU and, where a GPU is visible, on CUDA. A backend that fails to load or run fails the parity.
Inputs: the run's held-out images, crops of real photographs, and random
images, at batch 1 and 4, 32×32 and the non-square 40×56 (plus an odd 17×23).
"""

import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import tensorflow as tf
from PIL import Image

from core import contract
from core.images import encode_png
from core.repository import PARITY_REPORT
from serving.errors import describe
from serving.onnx_runtime import create_session, cuda_options, gpu_visible


@dataclasses.dataclass(frozen=True)
class Tolerance:
    max_abs: float = 1e-4          # float32 [-1, 1] space
    min_identical: float = 0.999   # share of uint8 values that are exactly equal
    max_uint8_diff: int = 1


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    images: np.ndarray  # uint8 NHWC


@dataclasses.dataclass
class Backend:
    name: str
    run_float: object  # float32 NHWC [-1, 1] -> float32, or None where the backend has no float entry point
    run_uint8: object  # uint8 NHWC -> uint8


# -- inputs ---------------------------------------------------------------------------------------------------
def _tile(images: list[np.ndarray], n: int) -> np.ndarray:
    return np.stack([images[i % len(images)] for i in range(n)])


def _photo_crops(height: int, width: int) -> list[np.ndarray]:
    from training.data.sources import DEMO_PHOTOS, demo_photo_dir
    crops = []
    for name in DEMO_PHOTOS[:4]:
        path = demo_photo_dir() / name
        if path.exists():
            rgb = np.asarray(Image.open(path).convert("RGB"))
            top, left = rgb.shape[0] // 3, rgb.shape[1] // 3
            crops.append(rgb[top:top + height, left:left + width])
    return crops


def parity_cases(held_out_dir: Path | None, seed: int = 0) -> list[Case]:
    rng = np.random.default_rng(seed)
    cases = []
    held_out = sorted(Path(held_out_dir).glob("*.png")) if held_out_dir and Path(held_out_dir).is_dir() else []
    if held_out:
        images = [np.asarray(Image.open(p).convert("RGB")) for p in held_out]
        images = [im for im in images if im.shape == images[0].shape]
        h, w = images[0].shape[:2]
        cases += [Case(f"held-out 1×{h}×{w}", _tile(images, 1)), Case(f"held-out 4×{h}×{w}", _tile(images, 4))]
    photos = _photo_crops(40, 56)
    if photos:
        cases += [Case("photos 1×40×56", _tile(photos, 1)), Case("photos 4×40×56", _tile(photos, 4))]
    cases += [Case("random 1×32×32", rng.integers(0, 256, (1, 32, 32, 3), dtype=np.uint8)),
              Case("random 4×40×56", rng.integers(0, 256, (4, 40, 56, 3), dtype=np.uint8)),
              Case("random 2×17×23", rng.integers(0, 256, (2, 17, 23, 3), dtype=np.uint8))]
    return cases


# -- backends -------------------------------------------------------------------------------------------------
def keras_backend(generator) -> Backend:
    def run_float(x):
        return generator(x, training=False).numpy()
    return Backend("keras", run_float, lambda images: contract.to_uint8(run_float(contract.to_unit(images))))


def saved_model_backend(directory: Path) -> Backend:
    loaded = tf.saved_model.load(str(directory))
    default, floats = loaded.signatures[contract.SERVING_DEFAULT], loaded.signatures[contract.PREDICT_FLOAT]
    return Backend("savedmodel",
                   lambda x: floats(**{contract.FLOAT_INPUT: tf.constant(x)})[contract.FLOAT_OUTPUT].numpy(),
                   lambda im: default(**{contract.UINT8_INPUT: tf.constant(im)})[contract.UINT8_OUTPUT].numpy())


def graph_saved_model_backends(directory: Path) -> list[Backend]:
    """The SavedModel as tensorflow_model_server and saved_model_cli load it: serving_default and
    predict_float, and predict_encoded (PNG in, PNG out) compared as uint8."""
    import functools

    from serving.servable import SavedModelRunner
    # Loaded at the first comparison, so that a version the graph-mode loader refuses fails its pairs in
    # `compare` like any other backend that cannot run.
    runner = functools.cache(lambda: SavedModelRunner(directory))

    def run_encoded(images):
        blobs = [encode_png(image) for image in images]
        pngs = runner().run(contract.PREDICT_ENCODED, {contract.ENCODED_INPUT: np.array(blobs, dtype=object)})
        return np.stack([np.asarray(Image.open(io.BytesIO(b))) for b in pngs[contract.ENCODED_OUTPUT]])

    return [Backend("savedmodel-graph",
                    lambda x: runner().run(contract.PREDICT_FLOAT, {contract.FLOAT_INPUT: x})[contract.FLOAT_OUTPUT],
                    lambda im: contract.upscale_uint8(runner(), im)),
            Backend("savedmodel-graph predict_encoded", None, run_encoded)]


def onnx_backend(name: str, uint8_path: Path, float_path: Path | None, provider: str) -> Backend:
    # On CUDA in parity mode (TF32 off): TF32's ~1e-3 relative error is speed, not a defect of the export.
    providers = ([provider] if provider == "CPUExecutionProvider"
                 else [(provider, cuda_options(parity=True)), "CPUExecutionProvider"])
    uint8_session = create_session(uint8_path, providers)
    float_session = create_session(float_path, providers) if float_path else None
    run_float = (lambda x: float_session.run(None, {contract.FLOAT_INPUT: x})[0]) if float_session else None
    return Backend(name, run_float, lambda images: uint8_session.run(None, {contract.UINT8_INPUT: images})[0])


def onnx_backends(uint8_path: Path, float_path: Path | None, label: str = "onnx") -> list[Backend]:
    backends = [onnx_backend(f"{label}-cpu", uint8_path, float_path, "CPUExecutionProvider")]
    if gpu_visible():
        backends.append(onnx_backend(f"{label}-cuda", uint8_path, float_path, "CUDAExecutionProvider"))
    return backends


# -- comparison -----------------------------------------------------------------------------------------------
def compare(reference: Backend, others: list[Backend], cases: list[Case], tolerance: Tolerance) -> dict:
    """Each backend against the reference on every case; the verdict uses the tolerance."""
    pairs = []
    outputs = {}
    for case in cases:
        x = contract.to_unit(case.images)
        outputs[case.name] = {"float": reference.run_float(x), "uint8": reference.run_uint8(case.images)}
    for backend in others:
        try:
            pairs.append(_compare_one(reference, backend, cases, outputs, tolerance))
        except Exception as error:  # a backend that cannot run fails the parity, with its reason
            pairs.append(_failed_pair(reference, backend.name, error))
    return {"passed": all(p["passed"] for p in pairs), "tolerance": dataclasses.asdict(tolerance),
            "cases": [{"name": c.name, "shape": list(c.images.shape)} for c in cases], "pairs": pairs}


def _failed_pair(reference: Backend, name: str, error: Exception) -> dict:
    """The pair for a backend that could not be loaded or run: failed, with the first line of its error."""
    return {"pair": f"{reference.name} vs {name}", "passed": False, "error": describe(error)}


def _compare_one(reference: Backend, backend: Backend, cases: list[Case], outputs: dict,
                 tolerance: Tolerance) -> dict:
    rows = []
    for case in cases:
        ref = outputs[case.name]
        row = {"case": case.name}
        if backend.run_float is not None:
            diff = np.abs(backend.run_float(contract.to_unit(case.images)).astype(np.float64) - ref["float"])
            row.update(max_abs=float(diff.max()), mean_abs=float(diff.mean()))
        got = backend.run_uint8(case.images)
        assert got.shape == ref["uint8"].shape, f"{backend.name} gave {got.shape} for {case.name}"
        udiff = np.abs(got.astype(np.int16) - ref["uint8"])
        row.update(identical=float((udiff == 0).mean()), max_uint8_diff=int(udiff.max()))
        rows.append(row)
    summary = {"pair": f"{reference.name} vs {backend.name}",
               "identical": min(r["identical"] for r in rows),
               "max_uint8_diff": max(r["max_uint8_diff"] for r in rows)}
    if backend.run_float is not None:
        summary.update(max_abs=max(r["max_abs"] for r in rows),
                       mean_abs=float(np.mean([r["mean_abs"] for r in rows])))
    summary["passed"] = bool(summary["identical"] >= tolerance.min_identical
                             and summary["max_uint8_diff"] <= tolerance.max_uint8_diff
                             and summary.get("max_abs", 0.0) <= tolerance.max_abs)
    return {**summary, "cases": rows}


def markdown_table(report: dict) -> str:
    lines = ["| pair | float max abs | float mean abs | identical uint8 | max uint8 diff | verdict |",
             "|---|---:|---:|---:|---:|---|"]
    for p in report["pairs"]:
        if "error" in p:
            lines.append(f"| {p['pair']} | — | — | — | — | **FAIL**: {p['error'][:200]} |")
            continue
        fmax = f"{p['max_abs']:.2e}" if "max_abs" in p else "—"
        fmean = f"{p['mean_abs']:.2e}" if "mean_abs" in p else "—"
        lines.append(f"| {p['pair']} | {fmax} | {fmean} | {100 * p['identical']:.3f} % | "
                     f"{p['max_uint8_diff']} | {'pass' if p['passed'] else '**FAIL**'} |")
    return "\n".join(lines)


def _finite(value):
    """JSON has no Infinity or NaN: a tolerance that is not set (inf) is written as null."""
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def write_report(groups: dict, directory: Path, header: str) -> str:
    """parity.json (every figure) and parity.md (tables) for one or more groups of pairs."""
    (Path(directory) / PARITY_REPORT).write_text(json.dumps(
        _finite({"passed": all(g["passed"] for g in groups.values()), **groups}), indent=2) + "\n")
    parts = [header]
    for name, group in groups.items():
        t = group["tolerance"]
        parts += [f"\n### {name}\n", f"Tolerance: float max abs ≤ {t['max_abs']:g}, identical uint8 ≥ "
                  f"{100 * t['min_identical']:g} %, uint8 difference ≤ {t['max_uint8_diff']}.\n",
                  markdown_table(group)]
    text = "\n".join(parts) + "\n"
    (Path(directory) / "parity.md").write_text(text)
    return text
