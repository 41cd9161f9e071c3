"""Upscaling an image of any size in tiles whose stitched result equals whole-image inference.

Each tile is cut with `overlap` extra input pixels on every side and only its centre is kept. When the overlap
covers the generator's receptive-field radius, the kept centre never sees the tile's zero padding, so it is
computed from exactly the pixels whole-image inference uses: no seams, same numbers.
"""

import math
from collections.abc import Callable

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


def tiled_upscale(image: np.ndarray, upscale: Callable[[np.ndarray], np.ndarray], scale: int = 4,
                  tile: int = 128, overlap: int = 40) -> np.ndarray:
    """uint8 (H, W, 3) → uint8 (scale·H, scale·W, 3) through `upscale` (uint8 NHWC → uint8 NHWC), tile by tile."""
    h, w = image.shape[:2]
    if h <= tile + 2 * overlap and w <= tile + 2 * overlap:
        return upscale(image[None])[0]
    out = np.empty((h * scale, w * scale, image.shape[2]), np.uint8)
    for top in range(0, h, tile):
        for left in range(0, w, tile):
            bottom, right = min(top + tile, h), min(left + tile, w)
            y0, x0 = max(top - overlap, 0), max(left - overlap, 0)
            y1, x1 = min(bottom + overlap, h), min(right + overlap, w)
            sr = upscale(image[None, y0:y1, x0:x1])[0]
            out[top * scale:bottom * scale, left * scale:right * scale] = sr[
                (top - y0) * scale:(bottom - y0) * scale, (left - x0) * scale:(right - x0) * scale]
    return out
