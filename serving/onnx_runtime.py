"""ONNX Runtime sessions for the exported model: the best provider this machine really has."""

import ctypes
import functools
import os

import onnxruntime as ort


@functools.cache
def gpu_visible() -> bool:
    """True when the CUDA driver loads and reports a device.

    onnxruntime-gpu lists CUDAExecutionProvider even on machines without a GPU and logs an error when asked
    for it; asking the driver first keeps CPU machines quiet.
    """
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    count = ctypes.c_int(0)
    return cuda.cuInit(0) == 0 and cuda.cuDeviceGetCount(ctypes.byref(count)) == 0 and count.value > 0


def default_providers() -> list[str]:
    available = ort.get_available_providers()
    wanted = ["TensorrtExecutionProvider", "CUDAExecutionProvider"] if gpu_visible() else []
    return [p for p in wanted if p in available] + ["CPUExecutionProvider"]


def create_session(path, providers: list[str] | None = None, intra_op_threads: int = 0) -> ort.InferenceSession:
    """A session on `providers` (default: TensorRT → CUDA → CPU as really available).

    `session.get_providers()[0]` tells which provider runs the graph.
    """
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = intra_op_threads
    options.log_severity_level = 3  # errors only: the provider fallback is reported by get_providers()
    return ort.InferenceSession(str(path), sess_options=options, providers=providers or default_providers())
