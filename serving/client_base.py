"""What the gRPC and REST clients share: upscaling helpers on top of their `predict`, waiting for a model.

Free of TensorFlow, so that a REST client process stays light (a process holding TensorFlow's millions of
objects pays for them in every full garbage-collector pass).
"""

import time
from collections.abc import Callable

import numpy as np

from core import contract
from core.model_spec import DEFAULT_TILE


class ServingClientError(RuntimeError):
    """What a failed call raises, from either client: `code` is TF Serving's status name (NOT_FOUND,
    INVALID_ARGUMENT, RESOURCE_EXHAUSTED, UNAVAILABLE, DEADLINE_EXCEEDED, …), the same over gRPC and REST;
    `message` the server's words; `http_status` REST's status code (None over gRPC). Each protocol converts
    its errors in one function (`serving.client._error`, `serving.rest_client._error`)."""

    def __init__(self, code: str, message: str, http_status: int | None = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.http_status = http_status


STARTING = ("UNAVAILABLE", "NOT_FOUND")  # what a server says while it starts or loads its first version


class ServingClient:
    """What both clients (gRPC in serving.client, REST in serving.rest_client) offer on top of their `predict`,
    `status` and `close`."""

    def __init__(self, target: str, model_name: str, version: int | None, version_label: str | None,
                 timeout: float, retries: int, backoff: float):
        self.target = target
        self.model_name = model_name
        self.version = version
        self.version_label = version_label
        self.timeout = timeout  # seconds per call
        self.retries = retries  # while the server is starting or restarting, with exponential back-off
        self.backoff = backoff

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def upscale(self, images: np.ndarray) -> np.ndarray:
        """uint8 RGB (N, H, W, 3) or one (H, W, 3) → uint8 of 4× the height and width."""
        images = np.asarray(images)
        single = images.ndim == 3
        batch = images[None] if single else images
        out = self.predict({contract.UINT8_INPUT: np.ascontiguousarray(batch, dtype=np.uint8)})[contract.UINT8_OUTPUT]
        return out[0] if single else out

    def upscale_file(self, path, tile: int = DEFAULT_TILE) -> np.ndarray:
        """A picture of any size, sent as fixed-size tiles (one request each) that TF Serving's batcher can
        join with other clients' tiles; the stitched result equals whole-image inference."""
        from PIL import Image, ImageOps

        from serving.tiling import tiled_upscale
        with Image.open(path) as image:
            rgb = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
        return tiled_upscale(rgb, self.upscale, tile=tile)  # the article's generator's scale and radius

    def wait_until_available(self, timeout: float = 120.0,
                             give_up: Callable[[list[dict]], str | None] = lambda statuses: None) -> list[dict]:
        """Poll the model's status until a version is AVAILABLE. `give_up(statuses)` is asked at every poll
        (statuses empty while the server does not answer yet): a reason it returns is raised as a
        ServingClientError with code UNAVAILABLE; the timeout, as DEADLINE_EXCEEDED (the one error type)."""
        deadline = time.monotonic() + timeout
        while True:
            statuses = []
            try:
                statuses = self.status()
                if any(s["state"] == "AVAILABLE" for s in statuses):
                    return statuses
            except ServingClientError as error:
                if error.code not in STARTING:
                    raise
            reason = give_up(statuses)
            if reason:
                raise ServingClientError("UNAVAILABLE", reason)
            if time.monotonic() > deadline:
                raise ServingClientError("DEADLINE_EXCEEDED", f"no version of {self.model_name} became AVAILABLE at "
                                         f"{self.target} within {timeout:g} s")
            time.sleep(0.2)
