"""TF Serving's API, protocol-neutral: `predict`, `metadata`, `status` and `reload` take TF Serving's request
protos and raise `ServingError`s with its codes; the REST API (serving.rest) calls them as they are, and the
gRPC methods of the generated servicers of tensorflow-serving-api wrap them (`_grpc`: the one place a
`ServingError` becomes a gRPC status).

PredictionService: Predict and GetModelMetadata (Classify, Regress and MultiInference answer UNIMPLEMENTED,
the generated default). ModelService: GetModelStatus and HandleReloadConfigRequest. Errors carry TF
Serving's codes and messages, case by case from its source (predict_util.cc, tensorflow/cc/saved_model/
util.cc, server_core.cc, get_model_metadata_impl.cc, get_model_status_impl.cc; the table in
tests/test_serving.py): NOT_FOUND for an unknown model or version, FAILED_PRECONDITION for an unknown
signature, INVALID_ARGUMENT for an unknown label, a missing name, wrong inputs or output_filter, and a
tensor of the wrong dtype, rank, channels, size or values. RESOURCE_EXHAUSTED for an oversize message
comes from gRPC itself (the server's receive limit), and from our memory budget for a request that can never
fit in --max_inflight_bytes or that finds the waiting queue full.
"""

import contextlib
import dataclasses
import io
import logging
import math
import re
import threading
import time

import grpc
import numpy as np
from google.protobuf import any_pb2
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2, model_management_pb2,
                                     model_service_pb2_grpc, predict_pb2, prediction_service_pb2_grpc)
from tensorflow_serving.apis import status_pb2

from core import contract
from serving import tensors
from serving.admission import MemoryBudget
from serving.batching import Abandoned
from serving.errors import MAX_MESSAGE_CHARS, ServingError, echoed, invalid_argument, not_found
from serving.metrics import METRICS, UNSERVED

log = logging.getLogger("serving.predict")


@dataclasses.dataclass(frozen=True)
class Limits:
    # Input pixels (N·H·W) one request may carry: the output is scale² times larger. Bigger images go
    # through serving.upscale, which tiles them.
    max_pixels: int = 1 << 20
    max_images: int = 64  # images (elements) one request may carry
    # The most a request may compute, its client's deadline or not: no request buys unbounded work.
    max_request_seconds: float = 60.0
    # Refuse at once a request whose estimated time (its pixels × the version's seconds per pixel measured at
    # load) is over twice what its deadline leaves: it could not finish, and computing it would be in vain.
    admission_by_time: bool = True
    # Derived from --max_inflight_bytes (not set by --max_pixels_per_request): a request over it could never
    # fit in the memory budget, so it gets RESOURCE_EXHAUSTED, as the budget's own refusal.
    from_budget: bool = False

    def too_many_pixels(self, what: str) -> ServingError:
        advice = "send fewer or smaller images, or tile them (serving.upscale does)"
        if self.from_budget:
            return ServingError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                f"{what}, more than the {self.max_pixels} that fit in the server's memory budget "
                                f"(--max_inflight_bytes); {advice}")
        return invalid_argument(f"{what}, more than the {self.max_pixels} one request may carry; {advice}")


def _check_inputs(request_inputs, specs: dict, signature_def, limits: Limits) -> tuple[dict[str, np.ndarray], int]:
    """The request's inputs as arrays, checked, and the number of input pixels they carry."""
    sent, expected = set(request_inputs), set(specs)
    if len(sent) != len(expected):  # predict_util.cc: VerifyRequestInputsSize
        extra, missing = sorted(sent - expected), sorted(expected - sent)
        raise invalid_argument(
            f"input size does not match signature: {len(sent)}!={len(expected)} len({{{','.join(sorted(sent))}}})"
            f" != len({{{','.join(sorted(expected))}}}). Sent extra: {{{','.join(extra)}}}. "
            f"Missing but required: {{{','.join(missing)}}}.")
    missing = sorted(expected - sent)
    if missing:  # same count, other names: tensorflow/cc/saved_model/util.cc, GetInputValues
        raise invalid_argument(
            f"Signature input alias: {missing[0]}(feed name: {signature_def.inputs[missing[0]].name}) not found in "
            f"request and no default value provided. Inputs expected to be in the request "
            f"{{{','.join(sorted(sent))}}}, or default input alias set: ")
    arrays, pixels, images = {}, 0, []
    for index, key in enumerate(sorted(specs)):
        spec, proto = specs[key], request_inputs[key]
        got = tensors.dtype_name(proto.dtype)
        if got != spec.dtype:
            raise invalid_argument(f"Expects arg[{index}] to be {spec.dtype} but {got} is provided")
        shape = tensors.shape_of(proto)
        if spec.rank >= 0 and len(shape) != spec.rank:
            layout = " [batch, height, width, 3]" if spec.rank == 4 else ""
            raise invalid_argument(f"input '{key}' must have rank {spec.rank}{layout}, got shape {shape}")
        if spec.channels is not None and shape[-1] != spec.channels:
            raise invalid_argument(f"input '{key}' must have {spec.channels} channels (RGB) in its last "
                                   f"dimension, got shape {shape}")
        if not shape or min(shape) <= 0:
            raise invalid_argument(f"input '{key}' is empty (shape {shape}); send at least one image of at "
                                   "least 1×1 pixels")
        if len(shape) == 4 and shape[0] * shape[1] * shape[2] > limits.max_pixels:
            raise limits.too_many_pixels(f"input '{key}' has {shape[0]}×{shape[1]}×{shape[2]} pixels")
        if spec.dtype == "string" and math.prod(shape) > limits.max_images:  # before anything is expanded
            raise invalid_argument(f"input '{key}' has shape {shape}: {math.prod(shape)} images, more than the "
                                   f"{limits.max_images} one request may carry")
        try:
            array = tensors.to_numpy(proto)
        except tensors.TensorError as error:
            raise invalid_argument(f"input '{key}': {error}") from None
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise invalid_argument(f"input '{key}' contains NaN or Inf; send values in [-1, 1]")
        if spec.dtype == "string":
            sizes = _check_encoded_images(key, array, limits)
            images += [(1, height, width) for width, height in sizes]
            pixels += sum(width * height for width, height in sizes)
        elif len(shape) == 4:
            images.append(tuple(shape[:3]))
            pixels += shape[0] * shape[1] * shape[2]
        arrays[key] = array
    return arrays, pixels, images


_ENCODED_FORMATS = {"PNG", "JPEG", "GIF", "BMP"}  # what the graph's tf.io.decode_image reads


def _check_encoded_images(key: str, blobs: np.ndarray, limits: Limits) -> list[tuple[int, int]]:
    """Encoded images are measured from their headers, before anything decodes them: a 60-byte PNG that
    claims 100 000 × 100 000 pixels is refused at no cost. Returns the (width, height) each claims."""
    from PIL import Image
    if blobs.size > limits.max_images:
        raise invalid_argument(f"input '{key}' holds {blobs.size} images, more than the {limits.max_images} one "
                               "request may carry")
    total, sizes = 0, []
    for index, blob in enumerate(blobs.ravel()):
        try:
            with Image.open(io.BytesIO(blob)) as image:  # reads the header only
                kind, (width, height) = image.format, image.size
                # Later frames may be far larger than the first, and TensorFlow's decoder reads them all.
                if getattr(image, "is_animated", False):
                    raise invalid_argument(f"input '{key}' image {index} is animated ({kind}); send one frame")
        except ServingError:
            raise
        except Image.DecompressionBombError:  # PIL refuses the header itself: far beyond any limit of ours
            raise invalid_argument(f"input '{key}' claims more than the {limits.max_pixels} pixels one request may "
                                   f"carry (image {index}: over {2 * Image.MAX_IMAGE_PIXELS} pixels in its header)"
                                   ) from None
        except Exception:  # noqa: BLE001 - anything PIL cannot even identify
            kind, width, height = None, 0, 0
        if kind not in _ENCODED_FORMATS:
            raise invalid_argument(f"input '{key}' image {index} is not a PNG, JPEG, GIF or BMP file")
        total += width * height
        sizes.append((width, height))
        if total > limits.max_pixels:
            raise invalid_argument(f"input '{key}' claims more than the {limits.max_pixels} pixels one request may "
                                   f"carry (image {index}: {width}×{height} in its header); send fewer or smaller "
                                   "images, or tile them (serving.upscale does)")
    return sizes


def _grpc(context, call, *args):
    """A protocol-neutral call answered over gRPC: a ServingError aborts with its code and message; a request
    whose client had gone before the model ran ends as DEADLINE_EXCEEDED."""
    try:
        return call(*args)
    except ServingError as error:
        context.abort(error.code, error.message[:MAX_MESSAGE_CHARS])
    except Abandoned:
        context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline exceeded before the model ran")


def _wanted(context) -> bool:
    """Whether the client still waits: not cancelled, and its deadline (if any) not passed."""
    remaining = context.time_remaining()
    return context.is_active() and (remaining is None or remaining > 0)


def _output_aliases(output_filter, signature_def) -> list[str]:
    """The outputs a Predict returns: its output_filter, checked as predict_util.cc checks it, else all."""
    seen = []
    for alias in output_filter:
        if alias not in signature_def.outputs:
            raise invalid_argument(f"output tensor alias not found in signature: {alias} Outputs expected to be "
                                   f"in the set {{{','.join(sorted(signature_def.outputs))}}}.")
        if alias in seen:
            raise invalid_argument(f"duplicate output tensor alias: {alias}")
        seen.append(alias)
    return seen or sorted(signature_def.outputs)


def printable(text: str, limit: int) -> str:
    """`text` for a log line: at most `limit` characters (then "…"), control characters escaped (\\n, \\x1b, …)."""
    cut = text[:limit] + ("…" if len(text) > limit else "")
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode(), cut)


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


# Threads each front end's pool has beyond its Predicts' (--grpc_max_threads, --rest_api_num_threads): health
# checks, status and metrics share the pool, and a pool full of long Predicts left a Kubernetes probe waiting past
# its timeout (9 of 15 one-second checks failed). Predicts never take them.
RESERVED_THREADS = 2


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, manager, batcher=None, limits: Limits = Limits(), budget: MemoryBudget | None = None,
                 threads: dict | None = None):
        self.manager = manager
        self.batcher = batcher
        self.limits = limits
        # entrypoint ("GRPC", "REST") -> the Predicts it may run at once (its pool has RESERVED_THREADS more).
        self._slots = {entrypoint: (threading.BoundedSemaphore(count), count)
                       for entrypoint, count in (threads or {}).items()}
        self.budget = budget  # admits requests by their estimated memory; None: no bound
        self.in_flight = 0  # Predicts running now (what a bounded shutdown cuts short)
        self._work_in_flight = 0.0  # estimated seconds of computation of the requests admitted and not finished
        self._in_flight_lock = threading.Lock()

    def predict(self, request, still_wanted=lambda: True, entrypoint: str = "GRPC",
                seconds_left: float | None = None) -> predict_pb2.PredictResponse:
        """One Predict, whatever the protocol: raises ServingError with TF Serving's code, or Abandoned when
        the client went away before the model ran. `seconds_left`: the client's deadline; the computation stops
        when it, or --max_request_seconds, passes (DEADLINE_EXCEEDED). Counted and timed in the metrics."""
        started, status = time.perf_counter(), "OK"
        budget = self.limits.max_request_seconds
        deadline = time.monotonic() + (budget if seconds_left is None else min(seconds_left, budget))
        slot = self._slots.get(entrypoint)
        with self._in_flight_lock:
            self.in_flight += 1
        try:
            if slot is not None and not slot[0].acquire(blocking=False):
                slot = None  # not taken: nothing to give back
                flag = "--grpc_max_threads" if entrypoint == "GRPC" else "--rest_api_num_threads"
                raise ServingError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                   f"all {self._slots[entrypoint][1]} {entrypoint} request threads are computing "
                                   f"({flag}); retry shortly")
            return self._predict(request, still_wanted, deadline)
        except ServingError as error:
            status = error.code.name
            self.log_refusal(entrypoint, request.model_spec.name, error)
            raise
        except Abandoned:
            status = "DEADLINE_EXCEEDED"
            raise
        except Exception:
            status = "UNKNOWN"  # never counted as OK
            raise
        finally:
            if slot is not None:
                slot[0].release()
            with self._in_flight_lock:
                self.in_flight -= 1
            self.count(request.model_spec.name, entrypoint, status, time.perf_counter() - started)

    def count(self, model_name: str, entrypoint: str, status: str, seconds: float) -> None:
        """A Predict in the metrics, under its model's name when this server serves it (one label for all others)."""
        served = model_name if model_name in self.manager.models else UNSERVED
        METRICS.request(served, "Predict", entrypoint, status, seconds)

    @staticmethod
    def log_refusal(entrypoint: str, model_name: str, error: ServingError) -> None:
        """One log line, whatever the client sent: its name and the message cut short, control characters escaped
        (a name holding a newline would otherwise print a line of its own making)."""
        log.log(logging.WARNING if error.code == grpc.StatusCode.RESOURCE_EXHAUSTED else logging.INFO,
                "refused a %s Predict for %s: %s: %s", entrypoint, printable(model_name, 80), error.code.name,
                printable(error.message, 300))

    def _predict(self, request, still_wanted, deadline: float) -> predict_pb2.PredictResponse:
        client_wanted = still_wanted
        still_wanted = lambda: client_wanted() and time.monotonic() < deadline  # noqa: E731
        if not request.HasField("model_spec"):
            raise invalid_argument("Missing ModelSpec")
        servable = self.manager.resolve(request.model_spec)
        signature = request.model_spec.signature_name or contract.SERVING_DEFAULT
        if signature not in servable.inputs:  # predict_util.cc: RunPredict
            raise ServingError(grpc.StatusCode.FAILED_PRECONDITION, f"Serving signature key \"{signature}\" not found.")
        signature_def = servable.signature_defs[signature]
        inputs, pixels, images = _check_inputs(request.inputs, servable.inputs[signature], signature_def,
                                               self.limits)
        wanted = _output_aliases(request.output_filter, signature_def)  # checked before the model runs
        work = servable.computed_pixels(images) * servable.seconds_per_pixel
        self._check_time(work, deadline)
        with self._admitted(servable.cost.estimate(pixels), still_wanted), self._working(work):
            if not still_wanted():  # cancelled or expired while it waited: do not compute
                raise Abandoned()
            if self.batcher:
                outputs = self.batcher.run(servable, signature, inputs, still_wanted, deadline)
            else:
                outputs = servable.runner.run(signature, inputs, deadline)
        response = predict_pb2.PredictResponse()
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        response.model_spec.signature_name = signature
        for key in wanted:
            response.outputs[key].CopyFrom(tensors.to_proto(outputs[key]))
        return response

    def Predict(self, request, context):
        return _grpc(context, self.predict, request, lambda: _wanted(context), "GRPC", context.time_remaining())

    def _check_time(self, work: float, deadline: float) -> None:
        """Refuse at once a request that could not finish in time: its own computation (the windows its tiling
        computes, at the speed measured when the version loaded) plus the work already admitted, which shares
        the same cores, against twice what its deadline leaves."""
        with self._in_flight_lock:
            ahead = self._work_in_flight
        needed, left = work + ahead, deadline - time.monotonic()
        if self.limits.admission_by_time and needed > 2 * left:
            busy = f", {ahead:.1f} s of it for requests already running" if ahead else ""
            raise ServingError(grpc.StatusCode.DEADLINE_EXCEEDED,
                               f"this request needs about {needed:.1f} s of computation on this server (measured "
                               f"when the version loaded{busy}), more than the {max(left, 0):.1f} s its deadline "
                               "leaves (the client's, or --max_request_seconds); send smaller requests "
                               "(serving.upscale tiles) or allow more time")

    @contextlib.contextmanager
    def _working(self, work: float):
        with self._in_flight_lock:
            self._work_in_flight += work
        try:
            yield
        finally:
            with self._in_flight_lock:
                self._work_in_flight -= work

    def _admitted(self, cost_bytes: int, still_wanted):
        if self.budget is None:
            return contextlib.nullcontext()
        return self.budget.admit(cost_bytes, still_wanted)

    def metadata(self, request) -> get_model_metadata_pb2.GetModelMetadataResponse:
        """GetModelMetadata, whatever the protocol; raises ServingError (get_model_metadata_impl.cc)."""
        if not request.HasField("model_spec"):
            raise invalid_argument("Missing ModelSpec")
        fields = list(request.metadata_field)
        if not fields:
            raise invalid_argument("GetModelMetadataRequest must specify at least one metadata_field")
        for field in fields:
            if field != "signature_def":
                raise invalid_argument(f"Metadata field {field} is not supported")
        servable = self.manager.resolve(request.model_spec)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for key, signature in servable.signature_defs.items():
            signature_map.signature_def[key].CopyFrom(signature)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        packed = any_pb2.Any()
        packed.Pack(signature_map)
        response.metadata["signature_def"].CopyFrom(packed)
        return response

    def GetModelMetadata(self, request, context):
        return _grpc(context, self.metadata, request)


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, manager, reload_enabled: bool = True):
        self.manager = manager
        self.reload_enabled = reload_enabled

    def status(self, request) -> get_model_status_pb2.GetModelStatusResponse:
        """GetModelStatus, whatever the protocol; raises ServingError (get_model_status_impl.cc: a version label
        is ignored there, every version is reported)."""
        if not request.HasField("model_spec"):
            raise invalid_argument("Missing ModelSpec")
        name = request.model_spec.name
        if name not in self.manager.models:
            raise not_found(f"Could not find any versions of model {echoed(name)}")
        model = self.manager.models[name]
        statuses = dict(model.statuses)
        if request.model_spec.HasField("version"):
            version = request.model_spec.version.value
            if version not in statuses:
                raise not_found(f"Could not find version {version} of model {model.name}")
            statuses = {version: statuses[version]}
        if not statuses:
            raise not_found(f"Could not find any versions of model {model.name}")
        response = get_model_status_pb2.GetModelStatusResponse()
        for version, status in sorted(statuses.items()):
            response.model_version_status.add(
                version=version, state=status.state,
                status=status_pb2.StatusProto(error_code=grpc.StatusCode.UNKNOWN.value[0] if status.error else 0,
                                              error_message=status.error))
        return response

    def GetModelStatus(self, request, context):
        return _grpc(context, self.status, request)

    def reload(self, request) -> model_management_pb2.ReloadConfigResponse:
        """HandleReloadConfigRequest, whatever the protocol; raises ServingError. A list without any model is
        refused: it would unload everything while health still answered SERVING."""
        if not self.reload_enabled:
            raise ServingError(grpc.StatusCode.PERMISSION_DENIED, "this server does not accept configuration "
                               "reloads (started with --no-enable_reload_config)")
        if not request.config.HasField("model_config_list"):
            raise invalid_argument("ModelServerConfig must hold a model_config_list")
        if not request.config.model_config_list.config:
            raise invalid_argument("the model_config_list names no model: reloading it would unload every model; "
                                   "list the models to keep serving")
        self.manager.reload(request.config)
        return model_management_pb2.ReloadConfigResponse(status=status_pb2.StatusProto(error_code=0))

    def HandleReloadConfigRequest(self, request, context):
        return _grpc(context, self.reload, request)
