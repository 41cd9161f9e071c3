"""Upscaling an image of any size in tiles whose stitched result equals whole-image inference.

Each tile is cut with `overlap` extra input pixels on every side and only its centre is kept. When the overlap
covers the generator's receptive-field radius, the kept centre never sees the tile's zero padding, so it is
computed from exactly the pixels whole-image inference uses: no seams, same numbers.
"""

import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np


def receptive_radius(residual_blocks: int = 16, scale: int = 4) -> int:
    """Input pixels either side that reach one output pixel of the article's generator.

    9×9 conv (4) + two 3×3 convs per residual block + the 3×3 conv after them, then per ×2 stage a 3×3 conv
    at that stage's resolution, and the final 9×9 conv at the output resolution.
    """
    radius = 4 + 2 * residual_blocks + 1
    stages = int(math.log2(scale))
    radius += sum(1 / 2 ** i for i in range(stages)) + 4 / scale
    return math.ceil(radius)


DEFAULT_TILE = 128  # input pixels per tile side: windows of 128 + 2·40 = 208² for the article's generator


def export_record(version_dir: Path | None) -> dict:
    """A version's export.json (what export.to_onnx recorded), or {} where there is none."""
    if version_dir is not None and (Path(version_dir) / "export.json").exists():
        return json.loads((Path(version_dir) / "export.json").read_text())
    return {}


def model_facts(version_dir: Path | None) -> tuple[int, int]:
    """(scale, receptive radius) of an exported version, from its export.json; the article's when unknown."""
    spec = export_record(version_dir).get("model_spec", {})
    scale = spec.get("scale", 4)
    return scale, receptive_radius(spec.get("residual_blocks", 16), scale)


def window_plan(version_dir: Path | None) -> tuple[int, int, int]:
    """(scale, tile, overlap) a backend tiles this version with: the SavedModel's own (export.json), else the
    default tile at the generator's receptive radius."""
    scale, radius = model_facts(version_dir)
    tile = (export_record(version_dir).get("saved_model_tiling") or {}).get("tile", DEFAULT_TILE)
    return scale, tile, radius


def bounded_upscale(images: np.ndarray, upscale: Callable[[np.ndarray], np.ndarray], scale: int, tile: int,
                    overlap: int) -> np.ndarray:
    """NHWC → NHWC through `upscale` holding at most one window ((tile + 2·overlap)²) of pixels per call, as the
    SavedModel does in its graph (export.tiles): small images in chunks of the batch, larger ones tiled."""
    window = tile + 2 * overlap
    n, h, w = images.shape[:3]
    if h <= window and w <= window:
        per_call = max(1, window * window // (h * w))
        return np.concatenate([upscale(images[i:i + per_call]) for i in range(0, n, per_call)])
    return np.stack([tiled_upscale(image, upscale, scale, tile, overlap) for image in images])


def _windows(length: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """Along one axis: (window start, window end, kept start, kept end) for every tile.

    Every window has the same size, tile + 2·overlap (the whole axis when it is shorter): a window that would
    cross the image's edge is moved inside, flush with it, overlapping its neighbour more. Its kept part then
    still has `overlap` pixels of real context on each side (or the image's own edge), so nothing changes.
    """
    size = tile + 2 * overlap
    if length <= size:
        return [(0, length, 0, length)]
    windows = []
    for kept in range(0, length, tile):
        start = min(max(kept - overlap, 0), length - size)
        windows.append((start, start + size, kept, min(kept + tile, length)))
    return windows


def tiled_upscale(image: np.ndarray, upscale: Callable[[np.ndarray], np.ndarray], scale: int = 4,
                  tile: int = DEFAULT_TILE, overlap: int = 40) -> np.ndarray:
    """(H, W, C) → (scale·H, scale·W, C) through `upscale` (NHWC → NHWC of the same dtype), tile by tile.

    Every call gets the same shape, 1 × (tile + 2·overlap)² (or the whole image where it is smaller): requests
    that TF Serving's batcher can join, since it fails a batch whose images differ in size.
    """
    h, w = image.shape[:2]
    out = np.empty((h * scale, w * scale, image.shape[2]), image.dtype)
    for y0, y1, top, bottom in _windows(h, tile, overlap):
        for x0, x1, left, right in _windows(w, tile, overlap):
            sr = upscale(image[None, y0:y1, x0:x1])[0]
            out[top * scale:bottom * scale, left * scale:right * scale] = sr[
                (top - y0) * scale:(bottom - y0) * scale, (left - x0) * scale:(right - x0) * scale]
    return out
