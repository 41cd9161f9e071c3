"""Timing loops and the statistics serving people report: warm-up excluded, percentiles, throughput; and the
machine they were measured on, printed beside every figure."""

import os
import platform
import threading
import time
from importlib import metadata

import numpy as np


def version_of(distribution: str) -> str | None:
    """An installed library's version, or None where it is not installed (TensorFlow on a GPU box, say)."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def environment() -> dict:
    """The machine and the libraries: processor model, cores, GPU (nvidia-smi's name and driver), versions."""
    from serving.onnx_runtime import gpu_visible
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = None
    if gpu_visible():
        import subprocess
        gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True).stdout.strip() or "visible"
    return {"cpu": cpu, "cores": os.cpu_count(), "gpu": gpu, "python": platform.python_version(),
            **{name: version_of(name) for name in ("numpy", "tensorflow", "keras", "grpcio")},
            "onnxruntime": version_of("onnxruntime-gpu") or version_of("onnxruntime")}


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    """This machine's float32 matrix-multiply rate through numpy (best of a few): the hardware reference."""
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    a @ a
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        a @ a
        best = min(best, time.perf_counter() - started)
    return 2 * n ** 3 / best / 1e9


def summarize(latencies: list[float], images: int, wall: float) -> dict:
    ms = np.asarray(latencies) * 1000
    return {"requests": len(latencies), "images": images, "wall_seconds": wall,
            "p50_ms": float(np.percentile(ms, 50)), "p90_ms": float(np.percentile(ms, 90)),
            "p95_ms": float(np.percentile(ms, 95)), "p99_ms": float(np.percentile(ms, 99)),
            "mean_ms": float(ms.mean()), "min_ms": float(ms.min()), "max_ms": float(ms.max()),
            "images_per_second": images / wall}


def run_sequential(call, batch: int, warmup: int, seconds: float, min_requests: int, max_requests: int) -> dict:
    """One caller: `warmup` untimed calls, then calls until `seconds` and `min_requests` are both reached."""
    for _ in range(warmup):
        call()
    latencies = []
    started = time.perf_counter()
    while len(latencies) < max_requests and (len(latencies) < min_requests
                                             or time.perf_counter() - started < seconds):
        t = time.perf_counter()
        call()
        latencies.append(time.perf_counter() - t)
    wall = time.perf_counter() - started
    return summarize(latencies, batch * len(latencies), wall)


def run_concurrent(make_call, clients: int, batch: int, warmup: int, seconds: float, min_requests: int) -> dict:
    """`clients` threads, each with its own call (its own channel), all released together."""
    calls = [make_call() for _ in range(clients)]
    for call in calls:
        for _ in range(warmup):
            call()
    latencies, lock = [], threading.Lock()
    start = threading.Barrier(clients + 1)
    deadline = [0.0]

    def client(call):
        start.wait()
        mine = []
        while time.perf_counter() < deadline[0] or len(mine) < min_requests:
            t = time.perf_counter()
            call()
            mine.append(time.perf_counter() - t)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    deadline[0] = time.perf_counter() + seconds
    started = time.perf_counter()
    start.wait()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    return summarize(latencies, batch * len(latencies), wall)
