"""One loaded model version: its signatures, their input contracts, and how to run them. TensorFlow is imported
only where a SavedModel is read: an ONNX Runtime worker (serving.bulk's) starts without it."""

from __future__ import annotations

import dataclasses
import functools
import io
import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from core import contract
from core.images import encode_png
from core.repository import ONNX_FLOAT, ONNX_UINT8, SAVED_MODEL
from core.timing import median_seconds
from serving.errors import deadline_exceeded, describe, invalid_argument
from serving.onnx_runtime import GPU_PROVIDERS, DeviceRunner, create_session, gpu_visible, tensorrt_usable

log = logging.getLogger("serving.servable")

if TYPE_CHECKING:
    from tensorflow.core.protobuf import meta_graph_pb2


@dataclasses.dataclass(frozen=True)
class InputSpec:
    key: str
    dtype: str  # TensorFlow's name: "uint8", "float", "string"
    rank: int   # -1 for unknown
    channels: int | None  # the last dimension when fixed


def read_signature_defs(version_dir: Path) -> dict[str, meta_graph_pb2.SignatureDef]:
    """Every SignatureDef of the SavedModel's `serve` MetaGraph, `__saved_model_init_op` included: what TF
    Serving's GetModelMetadata answers (get_model_metadata_impl.cc copies the whole map)."""
    from tensorflow.core.protobuf import saved_model_pb2
    saved = saved_model_pb2.SavedModel.FromString((Path(version_dir) / SAVED_MODEL).read_bytes())
    for meta_graph in saved.meta_graphs:
        if "serve" in meta_graph.meta_info_def.tags:
            return dict(meta_graph.signature_def.items())
    raise ValueError(f"{version_dir} has no MetaGraph tagged 'serve'")


def input_specs(signature: meta_graph_pb2.SignatureDef) -> dict[str, InputSpec]:
    from serving.tensors import dtype_name
    specs = {}
    for key, info in signature.inputs.items():
        dims = [d.size for d in info.tensor_shape.dim]
        rank = -1 if info.tensor_shape.unknown_rank else len(dims)
        channels = dims[-1] if dims and dims[-1] > 0 else None
        specs[key] = InputSpec(key, dtype_name(info.dtype), rank, channels)
    return specs


class SavedModelRunner:
    """Runs signatures of a SavedModel in this process the way TF Serving does (SavedModelBundle, as in
    `saved_model_cli run`): the MetaGraph tagged `serve` imported into a graph-mode Session, the restore op
    run, then the init op; each call feeds and fetches the SignatureDef's tensor names. So a SavedModel
    that TF Serving would refuse (a variable the restore op does not fill) fails here too, at load."""

    backend = "savedmodel"

    def __init__(self, version_dir: Path):
        import tensorflow as tf
        self._graph = tf.Graph()
        self._session = tf.compat.v1.Session(graph=self._graph)
        logger = tf.get_logger()
        level = logger.level
        logger.setLevel("ERROR")  # the v1 loader's deprecation notice is not our user's business
        try:
            with self._graph.as_default():
                meta_graph = tf.compat.v1.saved_model.loader.load(self._session, ["serve"], str(version_dir))
        except Exception:
            self._session.close()
            raise
        finally:
            logger.setLevel(level)
        self._signatures = {name: ({k: v.name for k, v in sig.inputs.items()},
                                   {k: v.name for k, v in sig.outputs.items()})
                            for name, sig in meta_graph.signature_def.items() if not name.startswith("__")}

    def run(self, signature: str, inputs: dict[str, np.ndarray], deadline: float | None = None
            ) -> dict[str, np.ndarray]:
        """The signature's outputs; with a `deadline` (time.monotonic()) the Session run is aborted when it
        passes, as TF Serving's --enforce_session_run_timeout does (DEADLINE_EXCEEDED)."""
        import tensorflow as tf
        feeds, fetches = self._signatures[signature]
        options = None
        if deadline is not None:
            milliseconds = int((deadline - time.monotonic()) * 1000)
            if milliseconds <= 0:
                raise deadline_exceeded()
            options = tf.compat.v1.RunOptions(timeout_in_ms=milliseconds)
        try:
            return self._session.run(fetches, {feeds[k]: v for k, v in inputs.items()}, options=options)
        except tf.errors.DeadlineExceededError:
            raise deadline_exceeded() from None
        except tf.errors.InvalidArgumentError as error:  # a truncated or lying image file, found by the decoder
            raise invalid_argument(describe(error)) from None


def _run_until(run, deadline: float | None) -> np.ndarray:
    """`run(options)`: one ONNX Runtime run, terminated by its RunOptions if `deadline` passes while it
    computes."""
    if deadline is None:
        return run(None)
    import onnxruntime
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise deadline_exceeded()
    options = onnxruntime.RunOptions()
    timer = threading.Timer(remaining, setattr, (options, "terminate", True))
    timer.start()
    try:
        return run(options)
    except Exception:
        if options.terminate:
            raise deadline_exceeded() from None
        raise
    finally:
        timer.cancel()


def _session_for(path: Path, providers, intra_op_threads: int, graphs: bool, cpu_settings=None) -> tuple:
    """(session, whether it was made for CUDA graphs): ONNX Runtime refuses them when a node would run on the
    CPU, and the model then runs without."""
    if graphs:
        try:
            return create_session(path, providers, intra_op_threads, graphs=True), True
        except Exception as error:
            log.warning("%s: CUDA graphs refused, running without: %s", path.name, error)
    return create_session(path, providers, intra_op_threads, cpu_settings=cpu_settings), False


def _runner(session, on_gpu: bool, graphs: bool):
    """(images, RunOptions or None) -> the session's only output: bound per shape on a GPU, else plain runs."""
    if on_gpu:
        return DeviceRunner(session, graphs)
    name = session.get_inputs()[0].name
    return lambda images, options: session.run(None, {name: images}, options)[0]


class OnnxRunner:
    """Runs the same signatures on ONNX Runtime: model.onnx, model_float.onnx, and encoded images decoded
    here and passed through model.onnx."""

    backend = "onnx"

    def __init__(self, version_dir: Path, providers: list[str] | None = None, intra_op_threads: int = 0,
                 tune_cpu: bool = True, gpu_mode: str = "graphs"):
        """`gpu_mode`, where a GPU runs the model: "graphs" (I/O binding and a CUDA graph per input shape; on
        CUDA, not TensorRT), "iobinding" (without graphs) or "run" (plain session runs)."""
        from core.export_record import ExportRecord
        version_dir = Path(version_dir)
        graphs = gpu_mode == "graphs" and providers is None and gpu_visible() and not tensorrt_usable()
        uint8, graphs_uint8 = _session_for(version_dir / ONNX_UINT8, providers, intra_op_threads, graphs)
        self.provider = uint8.get_providers()[0]
        self.cpu_settings, self.cpu_timings = None, []
        if tune_cpu and self.provider == "CPUExecutionProvider":  # threads, spinning, layout: timed here
            from serving.cpu_tuning import choose, sample_feed
            self.cpu_settings, self.cpu_timings = choose(version_dir / ONNX_UINT8, sample_feed(uint8))
            uint8 = create_session(version_dir / ONNX_UINT8, ["CPUExecutionProvider"],
                                   cpu_settings=self.cpu_settings)
        on_gpu = self.provider in GPU_PROVIDERS and gpu_mode != "run"
        self.gpu_mode = ("graphs" if graphs_uint8 else "iobinding") if on_gpu else "run"  # what really runs
        self._run_uint8 = _runner(uint8, on_gpu, graphs_uint8)
        self._run_float = None
        if (version_dir / ONNX_FLOAT).exists():
            session, graphs_float = _session_for(version_dir / ONNX_FLOAT, providers, intra_op_threads, graphs,
                                                 self.cpu_settings)
            self._run_float = _runner(session, on_gpu, graphs_float)
        # Tiled like the SavedModel, so memory stays bounded here too.
        self._plan = ExportRecord.load(version_dir).window_plan()

    def _bounded(self, run, images: np.ndarray, deadline: float | None) -> np.ndarray:
        from serving.tiling import bounded_upscale
        return bounded_upscale(images, lambda part: _run_until(functools.partial(run, part), deadline),
                               *self._plan)

    def run(self, signature: str, inputs: dict[str, np.ndarray], deadline: float | None = None
            ) -> dict[str, np.ndarray]:
        """The signature's outputs, window by window; with a `deadline` (time.monotonic()) the window running
        when it passes is terminated and no other starts (DEADLINE_EXCEEDED)."""
        if signature == contract.SERVING_DEFAULT:
            return {contract.UINT8_OUTPUT: self._bounded(self._run_uint8, inputs[contract.UINT8_INPUT], deadline)}
        if signature == contract.PREDICT_FLOAT and self._run_float is not None:
            return {contract.FLOAT_OUTPUT: self._bounded(self._run_float, inputs[contract.FLOAT_INPUT], deadline)}
        if signature == contract.PREDICT_ENCODED:
            encoded = [self._encoded(b, deadline) for b in inputs[contract.ENCODED_INPUT].ravel()]
            return {contract.ENCODED_OUTPUT: np.array(encoded, dtype=object)}
        raise KeyError(signature)

    def _encoded(self, image_bytes: bytes, deadline: float | None = None) -> bytes:
        from PIL import Image
        try:
            rgb = np.asarray(Image.open(io.BytesIO(image_bytes)).convert("RGB"))
        except (OSError, ValueError, Image.DecompressionBombError) as error:  # truncated, corrupt, lying header
            raise invalid_argument(f"the image cannot be decoded: {describe(error)}") from None
        return encode_png(self._bounded(self._run_uint8, rgb[None], deadline)[0])


@dataclasses.dataclass
class Servable:
    """A loaded version: what it answers to and how it runs."""

    name: str
    version: int
    path: Path
    signature_defs: dict  # every SignatureDef, as GetModelMetadata answers them
    inputs: dict  # signature name -> {key: InputSpec}, for the signatures a Predict may name
    runner: object
    cost: object  # serving.admission.RequestCost: the memory a request of N input pixels takes
    seconds_per_pixel: float = 0.0  # measured at load on one window of `serving_default`: the time a request costs
    batch_gain: float = 0.0  # measured at load: how many times faster BATCH_PROBE images run as one batch
    tile: int = 0  # the windows the version computes in (core.export_record.ExportRecord.window_plan)
    overlap: int = 0

    def computed_pixels(self, images) -> int:
        """The input pixels a request of `images` ((count, height, width) each) makes the generator compute."""
        from serving.tiling import computed_pixels
        if not self.tile:
            return sum(n * h * w for n, h, w in images)
        return sum(n * computed_pixels(h, w, self.tile, self.overlap) for n, h, w in images)

    @classmethod
    def load(cls, name: str, version: int, path: Path, backend: str = "savedmodel",
             gpu_mode: str = "graphs") -> "Servable":
        """Load a version and replay its warm-up requests, as TF Serving does with --enable_model_warmup;
        raises when either fails, so such a version is never served. `gpu_mode`: OnnxRunner's."""
        from serving.admission import RequestCost
        from serving.warmup import replay_warmup
        signature_defs = read_signature_defs(path)
        runner = SavedModelRunner(path) if backend == "savedmodel" else OnnxRunner(path, gpu_mode=gpu_mode)
        replay_warmup(Path(path), runner)
        from core.export_record import ExportRecord
        _, tile, overlap = ExportRecord.load(path).window_plan()
        return cls(name, version, Path(path), signature_defs,
                   {k: input_specs(v) for k, v in signature_defs.items() if not k.startswith("__")}, runner,
                   RequestCost.for_version(path, backend), _seconds_per_pixel(runner, tile, overlap),
                   batch_gain(runner), tile, overlap)


BATCH_PROBE = 8  # images in the batch timed at load: the batcher's default --max_batch_size
PROBE_SIDE = 32  # the article's input


PAYS = 1.1  # the batching verdict's one threshold: a batch must be this much faster than one by one to be worth waiting for


def batching_pays(gain: float) -> bool:
    return gain >= PAYS


def describe_batch_gain(gain: float) -> str:
    verdict = ("server-side batching pays here" if batching_pays(gain) else "server-side batching costs here"
               if gain < 0.95 else "server-side batching makes little difference here")
    return (f"a batch of {BATCH_PROBE} {PROBE_SIDE}×{PROBE_SIDE} images runs {gain:.2f}× as fast as one by one: "
            f"{verdict}")


def batch_gain(runner, repeats: int = 3) -> float:
    """How many times faster BATCH_PROBE 32×32 images run as one batch than one by one, timed here, warm
    (medians of `repeats`): above 1, server-side batching pays on this machine; below, it costs."""
    def seconds(batch: int) -> float:
        feed = {contract.UINT8_INPUT: np.zeros((batch, PROBE_SIDE, PROBE_SIDE, 3), np.uint8)}
        return median_seconds(lambda: runner.run(contract.SERVING_DEFAULT, feed), repeats)
    return BATCH_PROBE * seconds(1) / seconds(BATCH_PROBE)


def _seconds_per_pixel(runner, tile: int, overlap: int) -> float:
    """One window of the version's tiling (the steady state of a large request), timed here, warm."""
    side = tile + 2 * overlap
    window = np.zeros((1, side, side, 3), np.uint8)
    started = time.perf_counter()
    runner.run(contract.SERVING_DEFAULT, {contract.UINT8_INPUT: window})
    return (time.perf_counter() - started) / (side * side)
