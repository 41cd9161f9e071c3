"""TF Serving's REST API (port 8501) on the embedded server, and its Prometheus metrics page.

URLs, JSON and errors follow TF Serving's source: http_rest_api_util.cc (paths), http_rest_api_handler.cc
(dispatch), util/json_tensor.cc (row `instances` and columnar `inputs` formats, `{"b64": …}` for binary
strings, outputs whose name ends in `_bytes` base64-encoded), http_server.cc (`{"error": …}` with the HTTP
status its ToHTTPStatusCode gives each code). Requests go through the same code as gRPC (checks, memory
budget, batching, metrics). A WSGI application (werkzeug) served by waitress; no HTTP parsing of ours.
"""

import base64
import re
import time
from urllib.parse import unquote

import grpc
import numpy as np
from google.protobuf import json_format
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, model_pb2, predict_pb2
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wrappers import Request, Response

from core import contract
from serving import rest_json, tensors
from serving.batching import Abandoned
from serving.errors import ServingError, invalid_argument
from serving.metrics import METRICS
from serving.tf_serving import METRICS_PATH

# http_rest_api_util.cc: kPredictionApiGegex and kModelStatusApiRegex.
_PREDICT = re.compile(r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)",
                      re.IGNORECASE)
_STATUS = re.compile(r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?",
                     re.IGNORECASE)


class RestApi:
    """The WSGI application: `RestApi(prediction, models, max_body_bytes)` answers like TF Serving's port 8501."""

    def __init__(self, prediction, models, max_body_bytes: int, timeout_seconds: float = 30.0, page=None):
        self.prediction = prediction  # serving.service.PredictionService
        self.models = models  # serving.service.ModelService
        self.max_body_bytes = max_body_bytes
        self.timeout_seconds = timeout_seconds  # every request's deadline (--rest_api_timeout_in_ms)
        self.page = page  # serving.web_ui.WebPage with --enable_ui, else None (TF Serving has no page)
        self.draining = False  # set on SIGTERM: requests already running finish, new ones are turned away

    def __call__(self, environ, start_response):
        if self.draining:
            return _json(503, {"error": "the server is shutting down"})(environ, start_response)
        request = Request(environ)
        request.max_content_length = self.max_body_bytes
        return self.respond(request)(environ, start_response)

    def respond(self, request: Request) -> Response:
        path = request.path
        if path == METRICS_PATH and request.method == "GET":
            return Response(generate_latest(METRICS.registry), content_type=CONTENT_TYPE_LATEST)
        if self.page is not None and (answer := self.page.respond(request)) is not None:
            return answer
        if not path.lower().startswith("/v1/"):
            return Response("", status=404)  # TF Serving registers no handler outside /v1/
        try:
            return _json(200, self._dispatch(request, path))
        except ServingError as error:
            return _json(contract.HTTP_STATUS.get(error.code.name, 500), {"error": error.message})
        except Abandoned:
            return _json(504, {"error": "Deadline exceeded before the model ran"})

    def _dispatch(self, http_request: Request, path: str) -> dict:
        method = http_request.method
        if method == "POST" and (match := _PREDICT.fullmatch(path)):
            name, version, label, verb = match.groups()
            started = time.perf_counter()
            try:
                spec = _model_spec(name, version, label)
                if verb.lower() != "predict":
                    raise ServingError(grpc.StatusCode.UNIMPLEMENTED, f"{verb} is not supported: the SRGAN model "
                                       "has only predict signatures")
                request, row_format = self._predict_request(
                    spec, _json_body(http_request, self.prediction.limits.max_pixels))
            except ServingError as error:  # refused before the prediction service saw it: counted here, as gRPC's
                model_name = unquote(name)
                self.prediction.count(model_name, "REST", error.code.name, time.perf_counter() - started)
                self.prediction.log_refusal("REST", model_name, error)
                raise
            return self._predict(request, row_format)
        if method == "GET" and (match := _STATUS.fullmatch(path)):
            name, version, label, subresource = match.groups()
            if not name:
                raise invalid_argument("Missing model name in request.")
            spec = _model_spec(name, version, label)
            if subresource:
                request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
                request.model_spec.CopyFrom(spec)
                return _metadata_json(self.prediction.metadata(request))
            request = get_model_status_pb2.GetModelStatusRequest()
            request.model_spec.CopyFrom(spec)
            return json_format.MessageToDict(self.models.status(request), always_print_fields_with_no_presence=True)
        raise invalid_argument(f"Malformed request: {method} {path}")

    def _predict_request(self, spec, body) -> tuple[predict_pb2.PredictRequest, bool]:
        """The PredictRequest a REST body stands for (json_tensor.cc's checks), as gRPC would have carried it, and
        whether the body was in row format (the answer is written in the same)."""
        if not isinstance(body, dict):
            raise invalid_argument("JSON Value: is not an object")  # json_tensor.cc: ParseJson
        signature = body.get("signature_name", "")
        if not isinstance(signature, str):
            raise invalid_argument("'signature_name' key must be a string value.")
        spec.signature_name = signature
        signature_def = self._signature_def(spec)
        arrays, row_format = _request_arrays(body, signature_def)
        request = predict_pb2.PredictRequest()
        request.model_spec.CopyFrom(spec)
        for key, array in arrays.items():
            request.inputs[key].CopyFrom(tensors.to_proto(array))
        return request, row_format

    def _predict(self, request: predict_pb2.PredictRequest, row_format: bool) -> dict:
        response = self.prediction.predict(request, entrypoint="REST", seconds_left=self.timeout_seconds)
        outputs = {key: (tensors.to_numpy(proto), key.endswith("_bytes") and proto.dtype == types_pb2.DT_STRING)
                   for key, proto in sorted(response.outputs.items())}
        return _response_json(outputs, row_format)

    def _signature_def(self, spec):
        servable = self.prediction.manager.resolve(spec)
        name = spec.signature_name or contract.SERVING_DEFAULT
        if name not in servable.inputs:  # http_rest_api_handler.cc: GetInfoMap
            raise invalid_argument(f"Serving signature name: \"{name}\" not found in signature def")
        return servable.signature_defs[name]


def _json(status: int, payload: dict) -> Response:
    return Response(rest_json.dumps(payload), status=status, content_type="application/json")


def _json_body(request: Request, max_pixels: int):
    """The parsed body. Before parsing, a cheap structural bound: an image needs one JSON list per pixel at
    most, so a body with more lists and objects than twice the pixels a request may carry (20 million empty
    lists in 60 MB used to cost 2 GB and 86 s to parse) is refused from a count of its bytes."""
    try:
        data = request.get_data(cache=False)
    except RequestEntityTooLarge:
        raise invalid_argument(f"request body larger than the {request.max_content_length} bytes this server "
                               "accepts (--rest_api_max_body_bytes)") from None
    if not data:
        raise invalid_argument("JSON Parse error: The document is empty")
    containers = data.count(b"[") + data.count(b"{")
    if containers > 2 * max_pixels + 10_000:  # the margin: the lists and objects around the images
        raise invalid_argument(f"the body holds {containers} JSON lists and objects, more than any request of at "
                               f"most {max_pixels} pixels needs")
    try:
        return rest_json.loads(data)
    except (ValueError, RecursionError) as error:
        raise invalid_argument(f"JSON Parse error: {error}") from None


def _model_spec(name: str, version: str | None, label: str | None):
    spec = model_pb2.ModelSpec(name=unquote(name))
    if version is not None:
        if int(version) >= 2**63:  # the path's regex admits digits only; TF Serving parses them as int64
            raise invalid_argument(f"Failed to convert version: {version} to numeric.")
        spec.version.value = int(version)
    if label is not None:
        spec.version_label = unquote(label)
    return spec


def _request_arrays(body: dict, signature_def) -> tuple[dict, bool]:
    """The named input arrays of a row (`instances`) or columnar (`inputs`) request, and which it was."""
    infos = dict(signature_def.inputs)
    if "instances" in body and "inputs" in body:
        raise invalid_argument("Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist")
    if "instances" in body:
        instances = body["instances"]
        if not isinstance(instances, list):
            raise invalid_argument("Excepting 'instances' to be an list/array")
        if not instances:
            raise invalid_argument("No values in 'instances' array")
        named = isinstance(instances[0], dict) and not _is_b64(instances[0])
        if not named and len(infos) > 1:
            raise invalid_argument("instances is a plain list, but expecting list of objects as multiple input "
                                   "tensors required as per tensorinfo_map")
        columns = {key: [] for key in infos}
        for index, item in enumerate(instances):
            if named != (isinstance(item, dict) and not _is_b64(item)):
                raise invalid_argument(f"Expecting {'object' if named else 'value/list'} but got "
                                       f"{'list' if named else 'object'} at item {index} of input list")
            values = item if named else {next(iter(infos)): item}
            if set(values) != set(infos):
                raise invalid_argument(f"Failed to process element: {index} of 'instances' list. JSON object must "
                                       f"only have keys: {','.join(sorted(infos))}")
            for key, value in values.items():
                columns[key].append(value)
        return {key: _array(key, values, infos[key].dtype) for key, values in columns.items()}, True
    if "inputs" in body:
        inputs = body["inputs"]
        if isinstance(inputs, dict) and not _is_b64(inputs):
            missing = sorted(set(infos) - set(inputs))
            if missing:
                raise invalid_argument(f"Missing named input: {missing[0]} in 'inputs' object.")
            return {key: _array(key, inputs[key], infos[key].dtype) for key in infos}, False
        if len(infos) > 1:
            raise invalid_argument("inputs is a plain value/list, but expecting an object as multiple input tensors "
                                   "required as per tensorinfo_map")
        key = next(iter(infos))
        return {key: _array(key, inputs, infos[key].dtype)}, False
    raise invalid_argument("Missing 'inputs' or 'instances' key")


def _is_b64(value) -> bool:
    return isinstance(value, dict) and list(value) == ["b64"]


def _array(key: str, value, dtype: int) -> np.ndarray:
    """A JSON value as the signature input's dtype; strings from `{"b64": …}` or text."""
    try:
        return _array_of(key, value, dtype)
    except RecursionError:  # lists nested hundreds deep
        raise invalid_argument(f"input '{key}': lists nested too deep (an image has 4 levels)") from None


def _array_of(key: str, value, dtype: int) -> np.ndarray:
    name = tensors.dtype_name(dtype)
    if name == "string":
        def bytes_of(v):
            if _is_b64(v):
                try:
                    return base64.b64decode(v["b64"], validate=True)
                except (ValueError, TypeError):
                    raise invalid_argument(f"input '{key}': unable to base64 decode") from None
            if isinstance(v, str):
                return v.encode()
            if isinstance(v, list):
                return [bytes_of(x) for x in v]
            raise invalid_argument(f"input '{key}': expected a string or {{\"b64\": …}}, got {type(v).__name__}")
        return np.array(bytes_of(value), dtype=object)
    target = tensors.numpy_dtype(dtype)
    if target is None:
        raise invalid_argument(f"input '{key}': tensors of type {name} are not supported")
    try:
        raw = np.array(value)
    except ValueError:
        raise invalid_argument(f"input '{key}': lists of unequal length (not a dense tensor)") from None
    if raw.size == 0:  # no values at all ([] or [[[[]]]]): the prediction service says what an image needs
        return raw.astype(target)
    if target.kind in "iu" and _beyond_64_bits(raw):
        info = np.iinfo(target)
        raise invalid_argument(f"input '{key}' is {name}: values must lie in [{info.min}, {info.max}]")
    if raw.dtype == object or raw.dtype.kind not in "biuf":
        raise invalid_argument(f"input '{key}': expected numbers in nested lists of equal length")
    if target.kind in "iu":
        if raw.dtype.kind == "f" or raw.dtype.kind == "b":
            raise invalid_argument(f"input '{key}' is {name}: send whole numbers")
        info = np.iinfo(target)
        if raw.size and (raw.min() < info.min or raw.max() > info.max):
            raise invalid_argument(f"input '{key}' is {name}: values must lie in [{info.min}, {info.max}]")
    return raw.astype(target)


def _beyond_64_bits(raw: np.ndarray) -> bool:
    """Whether the JSON held whole numbers too large for any 64-bit integer: orjson reads them as floats, Python's
    json as ints (numpy: object)."""
    if raw.dtype == object:
        return all(type(v) is int for v in raw.ravel())
    if raw.dtype.kind == "f":
        finite = np.isfinite(raw).all()
        return bool(finite and np.abs(raw).max() >= 2.0**63 and np.array_equal(raw, np.round(raw)))
    return False


def _jsonable(array: np.ndarray, as_bytes: bool):
    if array.dtype == object:
        encode = (lambda b: {"b64": base64.b64encode(b).decode()}) if as_bytes else \
            (lambda b: b.decode(errors="replace") if isinstance(b, bytes) else b)
        return np.vectorize(encode, otypes=[object])(array).tolist() if array.size else array.tolist()
    return rest_json.tensor(array)


def _response_json(outputs: dict, row_format: bool) -> dict:
    """json_tensor.cc: MakeRowFormatJsonFromTensors / MakeColumnarFormatJsonFromTensors."""
    if row_format:
        sizes = {key: array.shape[0] if array.ndim else 0 for key, (array, _) in outputs.items()}
        if len(set(sizes.values())) > 1:
            raise invalid_argument(f"Tensor name: {max(sizes, key=sizes.get)} has inconsistent batch size")
        if len(outputs) == 1:
            return {"predictions": _jsonable(*next(iter(outputs.values())))}
        return {"predictions": [{key: _jsonable(array[row, ...], as_bytes)
                                 for key, (array, as_bytes) in outputs.items()}
                                for row in range(next(iter(sizes.values())))]}
    columns = {key: _jsonable(array, as_bytes) for key, (array, as_bytes) in outputs.items()}
    return {"outputs": next(iter(columns.values())) if len(columns) == 1 else columns}


def _metadata_json(response) -> dict:
    """http_rest_api_util.cc ToJsonString: model_spec and the unpacked SignatureDefMap, proto field names."""
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signature_map)
    options = dict(preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
    return {"model_spec": json_format.MessageToDict(response.model_spec, **options),
            "metadata": {"signature_def": json_format.MessageToDict(signature_map, **options)}}


def drain_and_close(server, app: RestApi, timeout: float) -> bool:
    """Turn new requests away (503), let the running ones finish and their answers leave (up to `timeout`
    seconds), then close; True when nothing was cut off. `server`: what `serve_rest` returned."""
    app.draining = True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:  # the channels belong to waitress's loop thread: a changing dict means "look again"
            busy = any(getattr(channel, "requests", None) or getattr(channel, "total_outbufs_len", 0)
                       for channel in list(getattr(server, "active_channels", {}).values()))
        except RuntimeError:
            busy = True
        if not busy:
            break
        time.sleep(0.02)
    else:
        busy = True
    server.close()
    return not busy


def serve_rest(app: RestApi, host: str, port: int, threads: int, read_seconds: float = 10.0,
               connection_limit: int = 1000):
    """A waitress server for `app`, bound now; returns (server, port). `server.run()` serves until closed.

    Slow clients cannot hold it: a request must arrive whole within `read_seconds` of its first byte (a client
    trickling a byte every few seconds is cut off; waitress alone only times out silence), idle keep-alive
    connections are closed after 30 s, and up to `connection_limit` connections are open at once (waitress'
    default of 100 was filled by 110 such clients)."""
    from waitress.channel import HTTPChannel
    from waitress.server import create_server

    class BoundedReadChannel(HTTPChannel):
        def received(self, data):
            now = time.monotonic()
            if self.request is None:  # the first bytes of a new request: its clock starts
                self.request_started = now
            elif now - self.request_started > read_seconds:
                self.will_close = True
                return False
            return super().received(data)

    # waitress reads a body before the application sees it; it lets twice our limit through, so that our
    # JSON 400 answers a too-large body, and cuts off anything larger with its own 413.
    server = create_server(app, host=host, port=port, threads=threads, ident="srgan-toolkit",
                           max_request_body_size=2 * app.max_body_bytes + (1 << 20),
                           connection_limit=connection_limit, channel_timeout=30, cleanup_interval=1)
    server.channel_class = BoundedReadChannel
    idle_maintenance = server.maintenance

    def maintenance(now):
        """Waitress's (idle connections), and every second: a request begun over `read_seconds` ago and still
        not whole is cut off, even when its client has gone silent (bytes that never come never reach
        `received`; a body promised by `Expect: 100-continue` and never sent was held 31 s)."""
        idle_maintenance(now)
        cutoff = time.monotonic() - read_seconds
        for channel in list(server.active_channels.values()):
            if getattr(channel, "request", None) is not None and getattr(channel, "request_started", now) < cutoff:
                channel.will_close = True

    server.maintenance = maintenance
    return server, server.effective_port
