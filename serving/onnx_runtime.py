"""ONNX Runtime sessions for the exported model: the best provider this machine really has.

Providers are tried TensorRT → CUDA → CPU, and the GPU ones are asked for only when the CUDA driver reports a
device, TensorRT only when its library loads (onnxruntime-gpu lists both everywhere and prints an error block
when one cannot start; measured on an H100 machine without TensorRT).
`session.get_providers()[0]` tells which provider really runs the graph.
"""

import concurrent.futures
import ctypes
import functools
import logging
import os

import numpy as np
import onnxruntime as ort

from core.model_spec import ModelSpec

log = logging.getLogger("serving.onnx_runtime")
GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")
NO_GRAPH = "-1"  # the run option gpu_graph_id that neither captures nor replays a CUDA graph
CAPTURE_CALLS = 3  # ONNX Runtime's CUDA provider runs a graph id twice plainly, captures at the third call


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


def cuda_options(parity: bool = False, graphs: bool = False) -> dict:
    """CUDA provider options that matter for a stack of 3×3 convolutions; `parity`: TF32 off (the export's
    parity check); `graphs`: CUDA graphs, which only `DeviceRunner` may use (fixed buffers per shape)."""
    return {
        "cudnn_conv_algo_search": "EXHAUSTIVE",  # benchmark cuDNN's algorithms once per shape, keep the best
        "prefer_nhwc": "1",                      # our tensors are NHWC: fewer transposes around the convs
        "use_tf32": "0" if parity else "1",      # TF32 trades ~1e-3 relative error for speed
        "cudnn_conv_use_max_workspace": "1",
        "enable_cuda_graph": "1" if graphs else "0",
    }


def tensorrt_usable() -> bool:
    return gpu_visible() and "TensorrtExecutionProvider" in ort.get_available_providers() and tensorrt_loadable()


def default_providers(parity: bool = False, graphs: bool = False) -> list:
    """TensorRT where usable, CUDA (with CUDA graphs where `graphs`: ask only without TensorRT), then CPU."""
    available = ort.get_available_providers()
    providers = []
    if gpu_visible():
        if tensorrt_usable():
            providers.append(("TensorrtExecutionProvider", {"trt_fp16_enable": "0" if parity else "1",
                                                            "trt_engine_cache_enable": "1"}))
        if "CUDAExecutionProvider" in available:
            providers.append(("CUDAExecutionProvider", cuda_options(parity, graphs)))
    return providers + ["CPUExecutionProvider"]


def create_session(path, providers: list | None = None, intra_op_threads: int = 0,
                   parity: bool = False, cpu_settings=None, graphs: bool = False) -> ort.InferenceSession:
    """A session on `providers` (default: the best available; `parity` keeps TF32 and fp16 off; `graphs` asks
    CUDA for graphs, for `DeviceRunner`); `cpu_settings` (serving.cpu_tuning.CpuSettings, measured) replaces
    the CPU defaults."""
    if cpu_settings is not None:
        options = cpu_settings.options()
    else:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = intra_op_threads  # 0: one per physical core
        options.log_severity_level = 3  # errors only: the provider that runs is reported by get_providers()
    return ort.InferenceSession(str(path), sess_options=options,
                                providers=providers or default_providers(parity, graphs))


class BoundRunner:
    """Fixed-shape inference through I/O binding: input and output live on the provider's device and are
    reused, so nothing is allocated per call. With a `graph_id`, on a session made with CUDA graphs, the
    first calls capture the whole graph and later ones replay it (one launch instead of one per node).
    One call at a time: the buffers are shared.
    """

    def __init__(self, session: ort.InferenceSession, shape: tuple[int, int, int, int], dtype=np.uint8,
                 scale: int = ModelSpec.scale, graph_id: int | None = None):
        self.device = "cuda" if session.get_providers()[0] in GPU_PROVIDERS else "cpu"
        n, h, w, c = shape
        self.session = session
        self.graph_id = graph_id
        self.calls = 0
        self.input = ort.OrtValue.ortvalue_from_shape_and_type(shape, dtype, self.device, 0)
        self.output = ort.OrtValue.ortvalue_from_shape_and_type((n, h * scale, w * scale, c), dtype, self.device, 0)
        self.binding = session.io_binding()
        self.binding.bind_ortvalue_input(session.get_inputs()[0].name, self.input)
        self.binding.bind_ortvalue_output(session.get_outputs()[0].name, self.output)

    def compute(self, options: ort.RunOptions | None = None) -> None:
        """One run on the bound buffers, no copy to or from the host."""
        if self.graph_id is not None:
            options = options or ort.RunOptions()
            options.add_run_config_entry("gpu_graph_id", str(self.graph_id))
        self.session.run_with_iobinding(self.binding, options)
        self.calls += 1

    def __call__(self, images: np.ndarray, options: ort.RunOptions | None = None) -> np.ndarray:
        self.input.update_inplace(np.ascontiguousarray(images))
        self.compute(options)
        # On the CPU numpy() is a view of the output buffer, which the next call overwrites.
        return self.output.numpy() if self.device == "cuda" else self.output.numpy().copy()


class DeviceRunner:
    """A GPU session run through I/O binding, one `BoundRunner` per input shape, each with its own CUDA graph
    when the session was made with `graphs` (batch 1 at 32×32 twice as fast on an H100: docs/gpu.md).

    Clients send fixed-size tiles and large images are cut into equal windows, so the shapes are few. Past
    `max_shapes` the others run plainly: a stream of odd shapes cannot pin unbounded device memory. A shape
    whose first bound runs fail (a graph that cannot be captured) runs plainly from then on, said in the log.

    Every call runs on one thread of the process (`gpu_thread`), whichever thread asks: ONNX Runtime's CUDA
    provider keeps captured graphs per calling thread (a graph captured on one is replayed on no other), and a
    capture records the whole device (cudaStreamCaptureModeGlobal), so nothing else may touch it meanwhile. One
    thread also means the bound buffers serve one call at a time without locks.
    """

    def __init__(self, session: ort.InferenceSession, graphs: bool, max_shapes: int = 16,
                 scale: int = ModelSpec.scale):
        self.session, self.graphs, self.max_shapes, self.scale = session, graphs, max_shapes, scale
        self.input_name = session.get_inputs()[0].name
        self._bound: dict[tuple, BoundRunner | None] = {}  # None: runs plainly

    def __call__(self, images: np.ndarray, options: ort.RunOptions | None = None) -> np.ndarray:
        return gpu_thread().submit(self._run, images, options).result()

    @property
    def bound_shapes(self) -> list[tuple]:
        return gpu_thread().submit(lambda: [k for k, v in self._bound.items() if v is not None]).result()

    def _run(self, images: np.ndarray, options: ort.RunOptions | None) -> np.ndarray:
        shape = images.shape
        if shape not in self._bound and len(self._bound) < self.max_shapes:
            graph_id = len(self._bound) + 1 if self.graphs else None  # ids from 1: 0 is ONNX Runtime's own
            self._bound[shape] = BoundRunner(self.session, shape, images.dtype, self.scale, graph_id)
        runner = self._bound.get(shape)
        if runner is None:
            return self._plain(images, options)
        try:
            return runner(images, options)
        except Exception as error:
            capturing = runner.graph_id is not None and runner.calls < CAPTURE_CALLS
            if not capturing or (options is not None and options.terminate):
                raise  # a failure past the capture, or stopped by its deadline: nothing wrong with the graph
            log.warning("shape %s runs without a CUDA graph from now on: %s", shape, error)
            self._bound[shape] = None
            return self._plain(images, options)

    def _plain(self, images: np.ndarray, options: ort.RunOptions | None) -> np.ndarray:
        if self.graphs:  # a plain run must not capture: its buffers are gone after it
            options = options or ort.RunOptions()
            options.add_run_config_entry("gpu_graph_id", NO_GRAPH)
        return self.session.run(None, {self.input_name: images}, options)[0]


@functools.cache
def gpu_thread() -> concurrent.futures.ThreadPoolExecutor:
    """The one thread that runs every `DeviceRunner` call of this process."""
    return concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="gpu")


os.register_at_fork(after_in_child=gpu_thread.cache_clear)  # a forked child has none of its parent's threads
