"""The serving contract, in one place for export, serving, benchmarks and clients (numpy only, no TensorFlow).

Every exported form answers the same signatures with the same tensor names:
- `serving_default`: `images` uint8 RGB NHWC of any N, H, W → `sr_images` uint8 of N, scale·H, scale·W;
- `predict_float`: `lr` float32 [-1, 1] → `sr` float32 [-1, 1], the training model's own interface;
- `predict_encoded`: `image_bytes` (PNG/JPEG/BMP/GIF, one image per element) → `sr_png_bytes` (the `_bytes`
  suffix makes TF Serving's REST API base64-encode it).
The uint8 ↔ [-1, 1] conversion is the article's (x − 127.5) / 127.5, and back with rounding half to even and
clipping; the exported graphs compute the same in TensorFlow ops (`export.graphs`).
"""

import numpy as np

SERVING_DEFAULT = "serving_default"
PREDICT_FLOAT = "predict_float"
PREDICT_ENCODED = "predict_encoded"

UINT8_INPUT, UINT8_OUTPUT = "images", "sr_images"
FLOAT_INPUT, FLOAT_OUTPUT = "lr", "sr"
ENCODED_INPUT, ENCODED_OUTPUT = "image_bytes", "sr_png_bytes"

HALF_RANGE = 127.5  # uint8 value v ↔ v / HALF_RANGE − 1


def upscale_uint8(runner, images: np.ndarray) -> np.ndarray:
    """`serving_default` through anything with a servable's `run(signature, inputs)` (serving.servable)."""
    return runner.run(SERVING_DEFAULT, {UINT8_INPUT: images})[UINT8_OUTPUT]


def to_unit(images) -> np.ndarray:
    """uint8 (or 0–255) → float32 [-1, 1]."""
    return np.asarray(images, dtype=np.float32) / HALF_RANGE - 1.0


def to_uint8(unit_range) -> np.ndarray:
    """float [-1, 1] → uint8: round half to even, clip, as the exported graphs do."""
    return np.clip(np.round((np.asarray(unit_range, dtype=np.float32) + 1.0) * HALF_RANGE), 0, 255).astype(np.uint8)
