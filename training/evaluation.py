"""Scoring super-resolution on whole photographs the model never saw, as the literature does.

Each photograph is cropped to a multiple of the scale, degraded the way training degrades (antialiased
bicubic by default), then upscaled by the model and by the classical baselines. PSNR/SSIM on Y with a
`scale`-pixel border crop (`training.metrics`). Used by `training.publish` (the shipped model's card) and by
`benchmarks/quality.py` (any exported version), so both report the same numbers.
"""

import dataclasses
import logging
from pathlib import Path

import numpy as np
import tensorflow as tf
from PIL import Image

from core.model_spec import ModelSpec
from training import metrics
from training.data import photos
from training.data.images import read_rgb
from training.data.pipeline import PipelineConfig, downsample, to_unit_range
from training.niqe import niqe
from training.samples import bicubic_upscale


@dataclasses.dataclass(frozen=True)
class Pair:
    name: str
    lr: np.ndarray  # uint8 H×W×3
    hr: np.ndarray  # uint8 (scale·H)×(scale·W)×3


def make_pair(name: str, rgb: np.ndarray, scale: int = ModelSpec.scale, antialias: bool = True) -> Pair:
    h, w = (rgb.shape[0] // scale) * scale, (rgb.shape[1] // scale) * scale
    hr = rgb[:h, :w]
    lr = downsample(tf.constant(hr, tf.float32), PipelineConfig(scale=scale, antialias=antialias))
    return Pair(name, lr.numpy().astype(np.uint8), hr)


def held_out_pairs(scale: int = ModelSpec.scale, antialias: bool = True, image_dir: Path | None = None) -> list[Pair]:
    """The photos data set's held-out photographs (default) or every image in `image_dir`."""
    if image_dir is None:
        present, missing = photos.available(photos.HELD_OUT_PHOTOS)
        if missing:
            logging.getLogger(__name__).warning(photos.missing_note(missing))
        return [make_pair(photo.name, photos.read(photo, min_size=4 * scale), scale, antialias) for photo in present]
    from training.data.sources import list_images
    paths = list_images(Path(image_dir), recursive=False)
    return [make_pair(path.stem, read_rgb(path, min_size=4 * scale)[0], scale, antialias) for path in paths]


def lanczos_upscale(lr: np.ndarray, scale: int) -> np.ndarray:
    h, w = lr.shape[:2]
    return np.asarray(Image.fromarray(lr).resize((w * scale, h * scale), Image.LANCZOS))


BASELINES = {"bicubic": lambda lr, scale: bicubic_upscale(lr[None], scale)[0], "lanczos": lanczos_upscale}


def score_image(sr: np.ndarray, hr: np.ndarray, scale: int) -> dict:
    """PSNR and SSIM on Y, the colour shift (mean SR − HR per RGB channel in uint8 levels), NIQE on Y (None
    below `niqe.MIN_SIDE` pixels a side) and the high-frequency energy ratio against HR."""
    return {"psnr": float(metrics.psnr_y(sr[None], hr[None], scale)[0]),
            "ssim": float(metrics.ssim_y(sr[None], hr[None], scale)[0]),
            "colour_shift": [round(float(v), 3) for v in metrics.colour_shift(sr[None], hr[None], scale)[0]],
            "niqe": niqe(sr, scale), "hf_ratio": metrics.high_frequency_ratio(sr, hr, scale)}


def hr_niqe(pairs: list[Pair], scale: int) -> dict:
    """NIQE of the originals themselves, border cropped as for SR: the floor a model's NIQE moves toward."""
    per_image = {pair.name: niqe(pair.hr, scale) for pair in pairs}
    return {"images": per_image, **_mean_niqe(per_image)}


def _mean_niqe(per_image_niqe: dict) -> dict:
    scores = [v for v in per_image_niqe.values() if v is not None]
    return {"niqe": float(np.mean(scores)) if scores else None,
            "niqe_skipped": len(per_image_niqe) - len(scores)}


def summarise(per_image: dict, bicubic: dict | None) -> dict:
    """Means, the largest colour shift and, against bicubic's per-image scores, the worst photograph's gain
    and how many photographs are below bicubic in PSNR and in SSIM."""
    summary = {"psnr": float(np.mean([v["psnr"] for v in per_image.values()])),
               "ssim": float(np.mean([v["ssim"] for v in per_image.values()])),
               "colour_shift_max": max(abs(c) for v in per_image.values() for c in v["colour_shift"]),
               **_mean_niqe({name: v["niqe"] for name, v in per_image.items()}),
               "hf_ratio": float(np.mean([v["hf_ratio"] for v in per_image.values()]))}
    if bicubic is not None:
        gains = {name: v["psnr"] - bicubic[name]["psnr"] for name, v in per_image.items()}
        worst = min(gains, key=gains.get)
        summary.update({"gain": float(np.mean(list(gains.values()))), "worst": worst,
                        "worst_gain": float(gains[worst]),
                        "below_bicubic": sum(g < 0 for g in gains.values()),
                        "ssim_below_bicubic": sum(v["ssim"] < bicubic[name]["ssim"]
                                                  for name, v in per_image.items())})
    return summary


def score(upscalers: dict, pairs: list[Pair], scale: int = ModelSpec.scale, keep_outputs: bool = False) -> dict:
    """{method: {"images": {name: {psnr, ssim, colour_shift}}, "psnr": mean, "ssim": mean, …}} for every
    upscaler (uint8 H×W×3 LR → uint8 SR), with `summarise`'s figures against bicubic; with `keep_outputs`,
    each method's images under "outputs"."""
    results, images = {}, {}
    upscalers = {"bicubic": BASELINES["bicubic"], **upscalers}  # first: the others are compared with it
    for method, upscale in upscalers.items():
        per_image, outputs = {}, {}
        for pair in pairs:
            sr = upscale(pair.lr, scale) if method in BASELINES else upscale(pair.lr)
            per_image[pair.name] = score_image(sr, pair.hr, scale)
            if keep_outputs:
                outputs[pair.name] = sr
        images[method] = per_image
        results[method] = {"images": per_image, **summarise(per_image, images["bicubic"])}
        if keep_outputs:
            results[method]["outputs"] = outputs
    return results


def keras_upscaler(generator):
    """uint8 LR → uint8 SR through a Keras generator, with the exported graphs' conversion."""
    from core.contract import to_uint8

    def upscale(lr: np.ndarray) -> np.ndarray:
        return to_uint8(generator(to_unit_range(lr[None]), training=False))[0]
    return upscale
