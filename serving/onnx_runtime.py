"""ONNX Runtime sessions for the exported model: the best provider this machine really has.

Providers are tried TensorRT → CUDA → CPU, and the GPU ones are asked for only when the CUDA driver reports a
device, TensorRT only when its library loads (onnxruntime-gpu lists both everywhere and prints an error block
when one cannot start; measured on an H100 machine without TensorRT).
`session.get_providers()[0]` tells which provider really runs the graph.
"""

import ctypes
import functools
import os

import numpy as np
import onnxruntime as ort

from core.model_spec import ModelSpec


@functools.cache
def gpu_visible() -> bool:
    """True when the CUDA driver loads and reports at least one device."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    count = ctypes.c_int(0)
    return cuda.cuInit(0) == 0 and cuda.cuDeviceGetCount(ctypes.byref(count)) == 0 and count.value > 0


@functools.cache
def tensorrt_loadable() -> bool:
    """True when TensorRT's runtime library (which the TensorRT provider needs) can be loaded."""
    for name in ("libnvinfer.so.10", "libnvinfer.so"):
        try:
            ctypes.CDLL(name)
            return True
        except OSError:
            pass
    return False


def cuda_options(parity: bool = False) -> dict:
    """CUDA provider options that matter for a stack of 3×3 convolutions; `parity`: TF32 off (the export's
    parity check). CUDA graphs stay off: requests vary in shape (benchmarks/onnx_providers.py measures them)."""
    return {
        "cudnn_conv_algo_search": "EXHAUSTIVE",  # benchmark cuDNN's algorithms once per shape, keep the best
        "prefer_nhwc": "1",                      # our tensors are NHWC: fewer transposes around the convs
        "use_tf32": "0" if parity else "1",      # TF32 trades ~1e-3 relative error for speed
        "cudnn_conv_use_max_workspace": "1",
    }


def default_providers(parity: bool = False) -> list:
    available = ort.get_available_providers()
    providers = []
    if gpu_visible():
        if "TensorrtExecutionProvider" in available and tensorrt_loadable():
            providers.append(("TensorrtExecutionProvider", {"trt_fp16_enable": "0" if parity else "1",
                                                            "trt_engine_cache_enable": "1"}))
        if "CUDAExecutionProvider" in available:
            providers.append(("CUDAExecutionProvider", cuda_options(parity)))
    return providers + ["CPUExecutionProvider"]


def create_session(path, providers: list | None = None, intra_op_threads: int = 0,
                   parity: bool = False, cpu_settings=None) -> ort.InferenceSession:
    """A session on `providers` (default: the best available; `parity` keeps TF32 and fp16 off);
    `cpu_settings` (serving.cpu_tuning.CpuSettings, measured) replaces the CPU defaults."""
    if cpu_settings is not None:
        options = cpu_settings.options()
    else:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = intra_op_threads  # 0: one per physical core
        options.log_severity_level = 3  # errors only: the provider that runs is reported by get_providers()
    return ort.InferenceSession(str(path), sess_options=options,
                                providers=providers or default_providers(parity))


class BoundRunner:
    """Fixed-shape inference through I/O binding: input and output live on the provider's device and are
    reused, so nothing is allocated per call (a session made with CUDA's `enable_cuda_graph` replays the
    whole graph: benchmarks/onnx_providers.py measures that).
    """

    def __init__(self, session: ort.InferenceSession, shape: tuple[int, int, int, int], scale: int = ModelSpec.scale):
        device = "cuda" if session.get_providers()[0] in ("CUDAExecutionProvider",
                                                          "TensorrtExecutionProvider") else "cpu"
        n, h, w, c = shape
        self.session = session
        self.input = ort.OrtValue.ortvalue_from_shape_and_type(shape, np.uint8, device, 0)
        self.output = ort.OrtValue.ortvalue_from_shape_and_type((n, h * scale, w * scale, c), np.uint8, device, 0)
        self.binding = session.io_binding()
        self.binding.bind_ortvalue_input(session.get_inputs()[0].name, self.input)
        self.binding.bind_ortvalue_output(session.get_outputs()[0].name, self.output)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        self.input.update_inplace(np.ascontiguousarray(images))
        self.session.run_with_iobinding(self.binding)
        return self.output.numpy()
