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


def model_facts(version_dir: Path | None) -> tuple[int, int]:
    """(scale, receptive radius) of an exported version, from its export.json; the article's when unknown."""
    spec = {}
    if version_dir is not None and (Path(version_dir) / "export.json").exists():
        spec = json.loads((Path(version_dir) / "export.json").read_text()).get("model_spec", {})
    scale = spec.get("scale", 4)
    return scale, receptive_radius(spec.get("residual_blocks", 16), scale)


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
                  tile: int = 128, overlap: int = 40) -> np.ndarray:
    """uint8 (H, W, 3) → uint8 (scale·H, scale·W, 3) through `upscale` (uint8 NHWC → uint8 NHWC), tile by tile.

    Every call gets the same shape, 1 × (tile + 2·overlap)² (or the whole image where it is smaller): requests
    that TF Serving's batcher can join, since it fails a batch whose images differ in size.
    """
    h, w = image.shape[:2]
    out = np.empty((h * scale, w * scale, image.shape[2]), np.uint8)
    for y0, y1, top, bottom in _windows(h, tile, overlap):
        for x0, x1, left, right in _windows(w, tile, overlap):
            sr = upscale(image[None, y0:y1, x0:x1])[0]
            out[top * scale:bottom * scale, left * scale:right * scale] = sr[
                (top - y0) * scale:(bottom - y0) * scale, (left - x0) * scale:(right - x0) * scale]
    return out
