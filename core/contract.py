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

MODEL_NAME = "srgan"  # the served name every command defaults to
GRPC_PORT, REST_PORT = 8500, 8501  # TF Serving's default ports
LOCAL_GRPC, LOCAL_REST = f"127.0.0.1:{GRPC_PORT}", f"127.0.0.1:{REST_PORT}"  # the clients' default targets

# Server-side batching's defaults, for both servers (ours and the real one's batching_parameters).
MAX_BATCH_SIZE, BATCH_TIMEOUT_MICROS = 8, 5000

HALF_RANGE = 127.5  # uint8 value v ↔ v / HALF_RANGE − 1

# TF Serving's REST status for each gRPC status (http_server.cc, ToHTTPStatusCode), by the status's name.
HTTP_STATUS = {"OK": 200, "CANCELLED": 499, "UNKNOWN": 500, "INVALID_ARGUMENT": 400, "DEADLINE_EXCEEDED": 504,
               "NOT_FOUND": 404, "ALREADY_EXISTS": 409, "PERMISSION_DENIED": 403, "RESOURCE_EXHAUSTED": 429,
               "FAILED_PRECONDITION": 400, "ABORTED": 409, "OUT_OF_RANGE": 400, "UNIMPLEMENTED": 501,
               "INTERNAL": 500, "UNAVAILABLE": 503, "DATA_LOSS": 500, "UNAUTHENTICATED": 401}
# …and the status a client reads back from an HTTP code (the first name for codes several statuses share).
STATUS_OF_HTTP = {http: name for name, http in reversed(HTTP_STATUS.items())}


def upscale_uint8(runner, images: np.ndarray) -> np.ndarray:
    """`serving_default` through anything with a servable's `run(signature, inputs)` (serving.servable)."""
    return runner.run(SERVING_DEFAULT, {UINT8_INPUT: images})[UINT8_OUTPUT]


def to_unit(images) -> np.ndarray:
    """uint8 (or 0–255) → float32 [-1, 1]."""
    return np.asarray(images, dtype=np.float32) / HALF_RANGE - 1.0


def to_uint8(unit_range) -> np.ndarray:
    """float [-1, 1] → uint8: round half to even, clip, as the exported graphs do."""
    return np.clip(np.round((np.asarray(unit_range, dtype=np.float32) + 1.0) * HALF_RANGE), 0, 255).astype(np.uint8)
