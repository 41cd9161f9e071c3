"""A version's exported forms run in this process, as one function photograph → upscaled photograph: ONNX
Runtime (model.onnx and its float16/INT8 copies) or the SavedModel through TF Serving's loader. Photographs of
any size go through in tiles with the receptive-field overlap (the same numbers as whole-image inference).
Used by the quality benchmark and the export's blessing, so both score a version the same way."""

from pathlib import Path

from core import contract
from core.cli import UserError
from core.export_record import ExportRecord
from core.repository import ONNX_FP16, ONNX_INT8
from serving.tiling import tiled_upscale

BACKENDS = ("onnx", "onnx-fp16", "onnx-int8", "savedmodel")
_ONNX_FILES = {"onnx-fp16": (ONNX_FP16, " (export with --fp16)"),
               "onnx-int8": (ONNX_INT8, " (export with --int8; not written when its quality cost was above the "
                                        "budget: see export.json)")}


def batch_upscaler(version_dir: Path, backend: str, threads: int = 0):
    """uint8 NHWC → uint8 NHWC through one exported form of the version. `threads`: ONNX Runtime's threads (for
    several processes on one machine); 0: its CPU settings timed here, as the server does."""
    if backend in ("onnx", "savedmodel"):
        from serving.servable import OnnxRunner, SavedModelRunner
        runner = (OnnxRunner(version_dir, intra_op_threads=threads, tune_cpu=not threads) if backend == "onnx"
                  else SavedModelRunner(version_dir))
        return lambda images: contract.upscale_uint8(runner, images)
    if backend in _ONNX_FILES:
        from serving.onnx_runtime import create_session
        name, hint = _ONNX_FILES[backend]
        path = Path(version_dir) / name
        if not path.is_file():
            raise UserError(f"{path} does not exist{hint}.")
        session = create_session(path)
        return lambda images: session.run(None, {session.get_inputs()[0].name: images})[0]
    raise UserError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}.")


def photo_upscaler(version_dir: Path, backend: str):
    """uint8 H×W×3 → uint8 (sH)×(sW)×3, in the version's own windows (its tile plus the receptive radius)."""
    run = batch_upscaler(version_dir, backend)
    scale, tile, radius = ExportRecord.load(version_dir).window_plan()
    return lambda lr: tiled_upscale(lr, run, scale, tile, radius)
