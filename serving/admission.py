"""Admission by memory: requests in flight may hold at most `--max_inflight_bytes` of estimated memory.

A request that could never fit is refused at once (RESOURCE_EXHAUSTED, naming the limit); one that does not
fit now waits in a bounded queue until earlier ones finish, for as long as its client still wants it.
"""

import contextlib
import dataclasses
import threading
from pathlib import Path

import grpc

from serving.batching import Abandoned
from serving.errors import ServingError

_POLL_SECONDS = 0.05  # how often a waiting request checks whether its client is still there


@dataclasses.dataclass(frozen=True)
class RequestCost:
    """Estimated server memory of one request, from the model's spec and how the backend runs it.

    The generator's activations cost up to 16·channels·(scale² + 1) bytes per input pixel of one call (the
    last upsampling stage dominates: scale² output pixels of `channels` floats, about four tensors alive);
    inputs, outputs and their copies (float and uint8, the stitched tiles, the response) 15 + 33·scale² bytes
    per input pixel of the request. ONNX Runtime's arena holds ~1.3× more. Calibrated against
    `benchmarks/server_memory.py` on the article's generator (docs/reliability.md, "Bounded memory").
    """

    bytes_per_call_pixel: float
    bytes_per_pixel: float
    window_pixels: int | None  # the most input pixels one generator call holds; None: the whole request

    def estimate(self, pixels: int) -> int:
        held = pixels if self.window_pixels is None else min(pixels, self.window_pixels)
        return int(self.bytes_per_call_pixel * held + self.bytes_per_pixel * pixels)

    def max_pixels(self, budget_bytes: int) -> int:
        """The largest request (in input pixels) whose estimate fits in `budget_bytes`."""
        per_pixel = self.bytes_per_call_pixel + self.bytes_per_pixel
        if self.window_pixels is None or budget_bytes < per_pixel * self.window_pixels:
            return int(budget_bytes // per_pixel)
        return int((budget_bytes - self.bytes_per_call_pixel * self.window_pixels) // self.bytes_per_pixel)

    @classmethod
    def for_version(cls, version_dir: Path, backend: str) -> "RequestCost":
        from core.export_record import ExportRecord
        record = ExportRecord.load(version_dir)
        channels, scale = record.model_spec.channels, record.model_spec.scale
        activations = 16 * channels * (scale ** 2 + 1) * (1.3 if backend == "onnx" else 1.0)
        if backend == "onnx":  # the server tiles ONNX inputs itself
            _, tile, overlap = record.window_plan()
            window = tile + 2 * overlap
        else:  # the SavedModel tiles in its graph only when it was exported so (export.json says)
            tiling = record.saved_model_tiling
            window = tiling["window"] if tiling else None
        return cls(activations, 15 + 33 * scale ** 2, None if window is None else window * window)


class MemoryBudget:
    def __init__(self, limit_bytes: int, max_waiting: int):
        self.limit_bytes = limit_bytes
        self.max_waiting = max_waiting
        self._changed = threading.Condition()
        self._in_flight = 0
        self._waiting = 0
        self.peak_in_flight = 0  # the most ever admitted at once, for tests and logs

    @contextlib.contextmanager
    def admit(self, cost_bytes: int, still_wanted=lambda: True):
        if cost_bytes > self.limit_bytes:
            raise ServingError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                               f"this request needs about {_mb(cost_bytes)} of server memory, more than the "
                               f"{_mb(self.limit_bytes)} of --max_inflight_bytes; send fewer or smaller images, "
                               "or tile them (serving.upscale does)")
        with self._changed:
            if self._in_flight + cost_bytes > self.limit_bytes and self._waiting >= self.max_waiting:
                raise ServingError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                   f"the server is at its memory budget (--max_inflight_bytes "
                                   f"{_mb(self.limit_bytes)}) with {self._waiting} requests already waiting; "
                                   "retry later")
            self._waiting += 1
            try:
                while self._in_flight + cost_bytes > self.limit_bytes:
                    if not still_wanted():
                        raise Abandoned()
                    self._changed.wait(_POLL_SECONDS)
            finally:
                self._waiting -= 1
            self._in_flight += cost_bytes
            self.peak_in_flight = max(self.peak_in_flight, self._in_flight)
        try:
            yield
        finally:
            with self._changed:
                self._in_flight -= cost_bytes
                self._changed.notify_all()

    @property
    def in_flight_bytes(self) -> int:
        return self._in_flight


def _mb(n: int) -> str:
    return f"{n / 2**20:,.0f} MB"


def available_memory_bytes() -> int:
    """What the machine can still give (MemAvailable; the cgroup limit where one is lower)."""
    available = None
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    except OSError:
        pass
    if available is None:
        import os
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = open(path).read().strip()
        except OSError:
            continue
        if text.isdigit():
            available = min(available, int(text))
    return available
