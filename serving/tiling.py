"""Upscaling an image of any size in tiles whose stitched result equals whole-image inference.

Each tile is cut with `overlap` extra input pixels on every side and only its centre is kept. When the overlap
covers the generator's receptive-field radius (`ModelSpec.receptive_radius`; a version's tile and overlap come
from its `core.export_record.ExportRecord.window_plan`), the kept centre never sees the tile's zero padding, so it is
computed from exactly the pixels whole-image inference uses: no seams, same numbers.
"""

from collections.abc import Callable

import numpy as np

from core.model_spec import DEFAULT_TILE, ModelSpec


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


def windows(length: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
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


def computed_pixels(height: int, width: int, tile: int, overlap: int) -> int:
    """The input pixels the generator really computes for one height×width image: its windows' areas, context
    included (a 300×300 image in 128-pixel tiles with 40 of context: 3 × 208 per side, 4.3× its own pixels)."""
    def along(length: int) -> int:
        return sum(end - start for start, end, _, _ in windows(length, tile, overlap))
    return along(height) * along(width)


def tile_plan(height: int, width: int, tile: int, overlap: int) -> list[tuple[tuple, tuple]]:
    """Every window of an image: ((y0, y1, top, bottom), (x0, x1, left, right)) as `windows` gives them per axis."""
    return [(rows, columns) for rows in windows(height, tile, overlap) for columns in windows(width, tile, overlap)]


def cut(image: np.ndarray, window: tuple[tuple, tuple]) -> np.ndarray:
    (y0, y1, _, _), (x0, x1, _, _) = window
    return image[y0:y1, x0:x1]


def paste(out: np.ndarray, sr_window: np.ndarray, window: tuple[tuple, tuple], scale: int) -> None:
    """Put the kept centre of one upscaled window in its place in `out` (scale·H × scale·W)."""
    (y0, _, top, bottom), (x0, _, left, right) = window
    out[top * scale:bottom * scale, left * scale:right * scale] = sr_window[
        (top - y0) * scale:(bottom - y0) * scale, (left - x0) * scale:(right - x0) * scale]


def tiled_upscale(image: np.ndarray, upscale: Callable[[np.ndarray], np.ndarray], scale: int = ModelSpec.scale,
                  tile: int = DEFAULT_TILE, overlap: int = ModelSpec().receptive_radius) -> np.ndarray:
    """(H, W, C) → (scale·H, scale·W, C) through `upscale` (NHWC → NHWC of the same dtype), tile by tile.

    Every call gets the same shape, 1 × (tile + 2·overlap)² (or the whole image where it is smaller): requests
    that TF Serving's batcher can join, since it fails a batch whose images differ in size.
    """
    h, w = image.shape[:2]
    out = np.empty((h * scale, w * scale, image.shape[2]), image.dtype)
    for window in tile_plan(h, w, tile, overlap):
        paste(out, upscale(cut(image, window)[None])[0], window, scale)
    return out
