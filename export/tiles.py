"""Bounded memory inside the SavedModel: the generator never sees more than one window of pixels per call.

TF Serving runs whatever tensor a client sends; the generator's activations cost about 12 KB per input pixel,
so a 1024×1024 request would need ~13 GB. The exported signatures therefore run the generator on at most
`window²` input pixels at a time, inside the graph, so even the real `tensorflow_model_server` keeps its
memory bounded:

- small images (both sides ≤ window) in chunks of the batch holding at most window² pixels;
- larger ones one image at a time, in windows of tile + 2·overlap pixels whose centre tile is kept, the same
  windows as `serving.tiling` (flush with the image's edge at its borders). With the overlap at the
  generator's receptive radius each kept pixel is computed from the same inputs as whole-image inference.
"""

import dataclasses

import tensorflow as tf

from core.model_spec import DEFAULT_TILE


@dataclasses.dataclass(frozen=True)
class Tiling:
    tile: int  # input pixels kept per window side
    overlap: int  # input pixels of context either side: the generator's receptive radius
    scale: int

    @property
    def window(self) -> int:
        return self.tile + 2 * self.overlap

    @classmethod
    def for_spec(cls, spec, tile: int = DEFAULT_TILE) -> "Tiling":
        return cls(tile, spec.receptive_radius, spec.scale)

    def to_json(self) -> dict:
        return {**dataclasses.asdict(self), "window": self.window}


def bounded(generate, tiling: Tiling):
    """`generate` (float NHWC → float NHWC, ×scale) wrapped so that each call holds at most window² pixels."""
    window = tiling.window

    def run(x):
        shape = tf.shape(x)
        small = tf.logical_and(shape[1] <= window, shape[2] <= window)
        y = tf.cond(small, lambda: _in_chunks(generate, x, window * window),
                    lambda: _image_by_image(lambda image: _tiled(generate, image, tiling), x))
        return tf.ensure_shape(y, [None, None, None, x.shape[-1]])
    return run


def _in_chunks(generate, x, max_pixels):
    shape = tf.shape(x)
    per_call = tf.maximum(1, max_pixels // (shape[1] * shape[2]))
    chunks = (shape[0] + per_call - 1) // per_call
    parts = tf.TensorArray(x.dtype, size=chunks, infer_shape=False)
    for i in tf.range(chunks):
        parts = parts.write(i, generate(x[i * per_call:(i + 1) * per_call]))
    return parts.concat()


def _image_by_image(upscale_one, x):
    images = tf.TensorArray(x.dtype, size=tf.shape(x)[0], infer_shape=False)
    for i in tf.range(tf.shape(x)[0]):
        images = images.write(i, upscale_one(x[i:i + 1]))
    return images.concat()


def _windows(length, tiling: Tiling):
    """Along one axis, for each tile: window start, window end, kept start, kept end (as serving.tiling)."""
    window, tile = tiling.window, tiling.tile
    count = tf.where(length <= window, 1, (length + tile - 1) // tile)
    kept = tf.range(count) * tile
    start = tf.clip_by_value(kept - tiling.overlap, 0, tf.maximum(length - window, 0))
    end = tf.minimum(start + window, length)
    kept_end = tf.where(tf.range(count) == count - 1, length, kept + tile)
    return count, start, end, kept, kept_end


def _tiled(generate, image, tiling: Tiling):
    """One image (1, H, W, C) in windows; the kept parts joined along width, then the rows along height."""
    s = tiling.scale
    shape = tf.shape(image)
    rows_n, y0, y1, top, bottom = _windows(shape[1], tiling)
    cols_n, x0, x1, left, right = _windows(shape[2], tiling)
    # TensorArray.concat joins along axis 0: each piece is stored with the axis being joined moved first.
    rows = tf.TensorArray(image.dtype, size=rows_n, infer_shape=False)
    for i in tf.range(rows_n):
        pieces = tf.TensorArray(image.dtype, size=cols_n, infer_shape=False)
        for j in tf.range(cols_n):
            sr = generate(image[:, y0[i]:y1[i], x0[j]:x1[j]])
            kept = sr[:, (top[i] - y0[i]) * s:(bottom[i] - y0[i]) * s, (left[j] - x0[j]) * s:(right[j] - x0[j]) * s]
            pieces = pieces.write(j, tf.transpose(kept, [2, 0, 1, 3]))  # (w, 1, h, C)
        row = tf.transpose(pieces.concat(), [1, 2, 0, 3])  # (1, h, W, C)
        rows = rows.write(i, tf.transpose(row, [1, 0, 2, 3]))  # (h, 1, W, C)
    return tf.transpose(rows.concat(), [1, 0, 2, 3])
