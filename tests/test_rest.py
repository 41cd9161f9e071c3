"""TF Serving's REST API and Prometheus metrics on the embedded server, called with a real HTTP client."""

import base64
import io
import json
import time
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
from PIL import Image

from serving.process import free_port
from serving.tensors import to_numpy as tensors_of
from tests.helpers import (ServerProcess, copy_version, png, random_images, raw_predict, repository_with, run_module,
                           write_image)

BUDGET = 200 << 20


@pytest.fixture(scope="module")
def server(exported, tmp_path_factory):
    base = repository_with(exported[0], tmp_path_factory.mktemp("rest"))
    port = free_port()
    process = ServerProcess("--model_base_path", str(base), "--rest_api_port", str(port),
                            "--file_system_poll_wait_seconds", "0", "--max_pixels_per_request", str(1 << 20),
                            "--max_inflight_bytes", str(BUDGET), "--rest_api_max_body_bytes", str(16 << 20))
    process.rest = f"http://127.0.0.1:{port}"
    yield process
    assert process.stop() == 0


def http_bytes(server, method: str, path: str, body=None, raw: bytes | None = None) -> tuple[int, bytes]:
    data = raw if raw is not None else (json.dumps(body, separators=(",", ":")).encode() if body is not None
                                        else None)
    request = urllib.request.Request(server.rest + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def http(server, method: str, path: str, body=None, raw: bytes | None = None) -> tuple[int, dict | str]:
    status, answer = http_bytes(server, method, path, body, raw)
    text = answer.decode()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def test_predict_row_and_columnar_give_the_grpc_answer(server):
    images = random_images((2, 9, 7))
    grpc_answer = raw_predict(server.target, {"images": images}).outputs["sr_images"]
    expected = np.frombuffer(grpc_answer.tensor_content, np.uint8).reshape(2, 36, 28, 3)
    status, row = http(server, "POST", "/v1/models/srgan:predict", {"instances": images.tolist()})
    assert status == 200 and np.array_equal(np.array(row["predictions"], np.uint8), expected)
    status, columnar = http(server, "POST", "/v1/models/srgan/versions/1:predict",
                            {"signature_name": "serving_default", "inputs": {"images": images.tolist()}})
    assert status == 200 and np.array_equal(np.array(columnar["outputs"], np.uint8), expected)
    status, named_rows = http(server, "POST", "/v1/models/srgan:predict",
                              {"instances": [{"images": image.tolist()} for image in images]})
    assert status == 200 and np.array_equal(np.array(named_rows["predictions"], np.uint8), expected)


def test_encoded_images_go_in_and_come_back_as_b64(server):
    image = random_images((1, 10, 12))[0]
    status, answer = http(server, "POST", "/v1/models/srgan:predict",
                          {"signature_name": "predict_encoded",
                           "instances": [{"b64": base64.b64encode(png(image)).decode()}]})
    assert status == 200
    rest_png = base64.b64decode(answer["predictions"][0]["b64"])  # an output named *_bytes comes back as b64
    grpc_png = raw_predict(server.target, {"image_bytes": np.array([png(image)], dtype=object)},
                           signature="predict_encoded").outputs["sr_png_bytes"].string_val[0]
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(rest_png))), np.asarray(Image.open(io.BytesIO(grpc_png))))


def test_status_and_metadata_are_tf_servings_json(server):
    status, answer = http(server, "GET", "/v1/models/srgan")
    assert status == 200
    assert answer == {"model_version_status": [{"version": "1", "state": "AVAILABLE",
                                                "status": {"error_code": "OK", "error_message": ""}}]}
    status, answer = http(server, "GET", "/v1/models/srgan/versions/1/metadata")
    assert status == 200 and answer["model_spec"]["name"] == "srgan" and answer["model_spec"]["version"] == "1"
    signatures = answer["metadata"]["signature_def"]["signature_def"]
    assert signatures["serving_default"]["inputs"]["images"]["dtype"] == "DT_UINT8"
    assert {"serving_default", "predict_float", "predict_encoded"} <= set(signatures)


OK = {"instances": random_images((1, 8, 8)).tolist()}
# (method, path, body or raw bytes, HTTP status, text in the error): the gRPC answers table over HTTP, with
# the HTTP status TF Serving's http_server.cc gives each code, and REST's own JSON errors (json_tensor.cc).
BAD_REQUESTS = {
    "unknown model": ("POST", "/v1/models/nope:predict", OK, 404, "Servable not found for request: Latest(nope)"),
    "unknown version": ("POST", "/v1/models/srgan/versions/99:predict", OK, 404,
                        "Servable not found for request: Specific(srgan, 99)"),
    "version beyond int64": ("POST", "/v1/models/srgan/versions/99999999999999999999:predict", OK, 400,
                             "Failed to convert version: 99999999999999999999 to numeric."),
    "unknown label": ("POST", "/v1/models/srgan/labels/canary:predict", OK, 400,
                      "Unrecognized servable version label: canary"),
    "unknown signature": ("POST", "/v1/models/srgan:predict", {**OK, "signature_name": "classify"}, 400,
                          'Serving signature name: "classify" not found in signature def'),
    "classify": ("POST", "/v1/models/srgan:classify", OK, 501, "not supported"),
    "malformed path": ("POST", "/v1/models/srgan/predict", OK, 400, "Malformed request: POST /v1/models/srgan/predict"),
    "status without a name": ("GET", "/v1/models", None, 400, "Missing model name in request."),
    "status of an unknown model": ("GET", "/v1/models/nope", None, 404, "Could not find any versions of model nope"),
    "bad JSON": ("POST", "/v1/models/srgan:predict", b"{bad", 400, "JSON Parse error"),
    "empty body": ("POST", "/v1/models/srgan:predict", b"", 400, "JSON Parse error: The document is empty"),
    "not an object": ("POST", "/v1/models/srgan:predict", [1, 2], 400, "is not an object"),
    "no instances or inputs": ("POST", "/v1/models/srgan:predict", {"signature_name": ""}, 400,
                               "Missing 'inputs' or 'instances' key"),
    "both instances and inputs": ("POST", "/v1/models/srgan:predict", {**OK, "inputs": OK["instances"]}, 400,
                                  "expecting only one of 'inputs' or 'instances'"),
    "empty instances": ("POST", "/v1/models/srgan:predict", {"instances": []}, 400, "No values in 'instances'"),
    "ragged lists": ("POST", "/v1/models/srgan:predict", {"instances": [[[1, 2, 3]], [[1, 2]]]}, 400,
                     "not a dense tensor"),
    "floats for uint8": ("POST", "/v1/models/srgan:predict", {"instances": np.zeros((1, 4, 4, 3)).tolist()}, 400,
                         "send whole numbers"),
    "empty inputs": ("POST", "/v1/models/srgan:predict", {"inputs": []}, 400,
                     "input 'images' must have rank 4 [batch, height, width, 3], got shape [0]"),
    "an image without pixels": ("POST", "/v1/models/srgan:predict", {"inputs": [[[[]]]]}, 400,
                                "must have 3 channels (RGB) in its last dimension, got shape [1, 1, 1, 0]"),
    "an integer beyond 64 bits": ("POST", "/v1/models/srgan:predict", b'{"inputs": [[[[18446744073709551616]]]]}',
                                  400, "values must lie in [0, 255]"),
    "values over 255": ("POST", "/v1/models/srgan:predict", {"instances": np.full((1, 4, 4, 3), 300).tolist()},
                        400, "values must lie in [0, 255]"),
    "wrong channels": ("POST", "/v1/models/srgan:predict", {"instances": np.zeros((1, 4, 4, 4), int).tolist()},
                       400, "must have 3 channels"),
    "wrong rank": ("POST", "/v1/models/srgan:predict", {"instances": np.zeros((4, 4, 3), int).tolist()}, 400,
                   "must have rank 4"),
    "NaN in float input": ("POST", "/v1/models/srgan:predict",
                           b'{"signature_name": "predict_float", "instances": [[[[NaN, 0, 0]]]]}', 400, "NaN or Inf"),
    "missing named input": ("POST", "/v1/models/srgan:predict", {"inputs": {"lr": [[[[0, 0, 0]]]]}}, 400,
                            "Missing named input: images"),
    "bad b64": ("POST", "/v1/models/srgan:predict", {"signature_name": "predict_encoded",
                                                     "instances": [{"b64": "%%%"}]}, 400, "unable to base64 decode"),
    "too many pixels": ("POST", "/v1/models/srgan:predict",
                        {"inputs": {"images": np.zeros((1, 1030, 1030, 3), np.uint8).tolist()}}, 400,
                        "more than the 1048576"),
    "over the memory budget": ("POST", "/v1/models/srgan:predict",
                               {"inputs": np.zeros((1, 700, 700, 3), np.uint8).tolist()}, 429,
                               "more than the 200 MB of --max_inflight_bytes"),
    "body over the limit": ("POST", "/v1/models/srgan:predict", b"[" + b"0," * (9 << 20) + b"0]", 400,
                            "larger than the 16777216 bytes"),
}


def test_no_page_without_enable_ui_as_tf_serving(server):
    for path in ("/", "/ui/", "/ui/app.js", "/ui/config.json"):  # TF Serving registers nothing outside /v1/
        assert http_bytes(server, "GET", path) == (404, b""), path


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_requests_get_tf_servings_http_status_and_json_error(server, case):
    method, path, body, code, text = BAD_REQUESTS[case]
    raw = body if isinstance(body, bytes) else None
    status, answer = http(server, method, path, None if raw is not None else body, raw=raw)
    assert status == code, answer
    assert isinstance(answer, dict) and text in answer["error"], answer
    assert http(server, "GET", "/v1/models/srgan")[0] == 200  # and the server keeps serving


def test_answers_are_the_bytes_pythons_json_wrote_before(server):
    """orjson writes the answers now: byte for byte what `json.dumps(answer, separators=(",", ":"))` wrote for
    every answer but floats (tested below) and non-ASCII text (UTF-8 now, as TF Serving's writer)."""
    images = random_images((2, 5, 4))
    requests = [("POST", "/v1/models/srgan:predict", {"instances": images.tolist()}),
                ("POST", "/v1/models/srgan:predict", {"inputs": {"images": images.tolist()}}),
                ("POST", "/v1/models/srgan:predict", {"instances": [{"images": image.tolist()} for image in images]}),
                ("GET", "/v1/models/srgan", None), ("GET", "/v1/models/srgan/versions/1/metadata", None)]
    requests += [(method, path, body) for method, path, body, *_ in BAD_REQUESTS.values()]
    for method, path, body in requests:
        raw = body if isinstance(body, bytes) else None
        status, answer = http_bytes(server, method, path, None if raw is not None else body, raw=raw)
        before = json.dumps(json.loads(answer), separators=(",", ":"), ensure_ascii=False).encode()
        assert answer == before, (method, path, answer[:300], before[:300])


def test_float_answers_read_back_as_the_grpc_floats_without_noise_digits(server):
    from serving import rest_json
    images = random_images((1, 6, 5), seed=5)
    floats = images.astype(np.float32) / 127.5 - 1
    status, answer = http_bytes(server, "POST", "/v1/models/srgan:predict",
                                {"signature_name": "predict_float", "inputs": floats.tolist()})
    expected = tensors_of(raw_predict(server.target, {"lr": floats}, signature="predict_float").outputs["sr"])
    assert status == 200 and np.array_equal(np.array(json.loads(answer)["outputs"], np.float32), expected)
    # TF Serving's WriteDecimal writes a float32 0.2 as 0.2, not as the double 0.20000000298023224, whole
    # numbers with ".0", and NaN and ±Infinity as literals (which orjson alone would write as null).
    values = np.array([0.2, -1.0, 3.0, np.nan, np.inf, -np.inf], np.float32)
    assert rest_json.dumps(rest_json.tensor(values)) == b"[0.2,-1.0,3.0,NaN,Infinity,-Infinity]"
    assert rest_json.dumps(rest_json.tensor(values[:3])) == b"[0.2,-1.0,3.0]"
    assert rest_json.loads(b"[NaN, 1]")[1] == 1  # orjson refuses the literal TF Serving's parser reads


def test_the_client_reads_image_answers_straight_into_numpy_and_nothing_else():
    import gc

    from serving import rest_json
    images = random_images((2, 3, 5), seed=6)
    compact = rest_json.dumps({"outputs": rest_json.tensor(images)})
    array = rest_json.outputs_array(compact, np.uint8)
    assert array.dtype == np.uint8 and np.array_equal(array, images)
    # Anything else is left to the parser (None): pretty-printed (TF Serving's PrettyWriter), ragged or empty
    # lists, a number split by a blank, digits beside a list, negative, fractional or too large numbers, NaN,
    # several outputs, a scalar.
    pretty = json.dumps({"outputs": images.tolist()}, indent=4).encode()
    for document in (pretty, b'{"outputs":[[1,2],[3],[4,5,6]]}', b'{"outputs":[[1],[]]}', b'{"outputs":[1 2]}',
                     b'{"outputs":[1,,2]}', b'{"outputs":[[1,2]3]}', b'{"outputs":[4[1,2]]}',
                     b'{"outputs":[-1,2]}', b'{"outputs":[1.5]}', b'{"outputs":[256]}',
                     b'{"outputs":[NaN]}', b'{"outputs":{"a":[1],"b":[2]}}', b'{"outputs":7}',
                     b'{"outputs":[99999999999999999999999,1]}'):  # past int64: never wrapped round
        assert rest_json.outputs_array(document, np.uint8) is None, document
    with rest_json.collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def _metric(text: str, name: str, **labels) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_prometheus_metrics_move_with_requests(server):
    status, before = http(server, "GET", "/monitoring/prometheus/metrics")
    assert status == 200 and ":tensorflow:cc:saved_model:load_attempt_count" in before
    for _ in range(3):
        assert http(server, "POST", "/v1/models/srgan:predict", OK)[0] == 200
    raw_predict(server.target, {"images": np.zeros((1, 4, 4, 3), np.uint8)})
    assert http(server, "POST", "/v1/models/srgan:predict", {"instances": [[[[1, 2, 3, 4]]]]})[0] == 400
    status, after = http(server, "GET", "/monitoring/prometheus/metrics")
    ok = ":tensorflow:serving:request_count"
    assert _metric(after, ok, model_name="srgan", status="OK") - _metric(before, ok, model_name="srgan", status="OK") == 4
    assert (_metric(after, ok, model_name="srgan", status="INVALID_ARGUMENT")
            - _metric(before, ok, model_name="srgan", status="INVALID_ARGUMENT")) == 1
    latency = ":tensorflow:serving:request_latency_count"  # of OK requests only, as TF Serving times them
    assert (_metric(after, latency, entrypoint="REST") - _metric(before, latency, entrypoint="REST")) == 3
    assert (_metric(after, latency, entrypoint="GRPC") - _metric(before, latency, entrypoint="GRPC")) == 1
    assert _metric(after, ":tensorflow:cc:saved_model:load_latency") > 0


def test_every_refusal_is_counted_and_names_not_served_share_one_label(server):
    """REST refusals made before the prediction service (bad JSON, bad base64, …) are counted as their gRPC twins
    are; a client's made-up model names never become series of their own, nor log lines of their own making."""
    ok = ":tensorflow:serving:request_count"
    _, before = http(server, "GET", "/monitoring/prometheus/metrics")
    refused = [("/v1/models/srgan:predict", b"{bad"), ("/v1/models/srgan:predict", b""),
               ("/v1/models/srgan:predict", b'{"instances": [[1, 2], [1]]}')]
    for path, raw in refused:
        assert http(server, "POST", path, raw=raw)[0] == 400
    for index in range(50):  # (a REST model name cannot hold ":", the verb's separator)
        raw_name = urllib.request.quote(f"nope\n2026-12-08 ERROR FAKE LINE {index}" + "x" * 5000, safe="")
        assert http(server, "POST", f"/v1/models/{raw_name}:predict", OK)[0] == 404
    forged = "nope\n2026-12-08 02:00:00 ERROR serving.server: FAKE LINE"
    with pytest.raises(grpc.RpcError) as refusal:
        raw_predict(server.target, {"images": np.zeros((1, 4, 4, 3), np.uint8)}, name=forged + "y" * 100_000)
    assert refusal.value.code() == grpc.StatusCode.NOT_FOUND
    _, after = http(server, "GET", "/monitoring/prometheus/metrics")
    invalid = dict(model_name="srgan", status="INVALID_ARGUMENT")
    assert _metric(after, ok, **invalid) - _metric(before, ok, **invalid) == len(refused)
    unserved = dict(model_name="(not served)", status="NOT_FOUND")
    assert _metric(after, ok, **unserved) - _metric(before, ok, **unserved) == 51
    assert "FAKE LINE" not in after and len(after) < len(before) + 10_000
    time.sleep(0.5)  # the log lines are written by the server process
    forged_lines = [line for line in server.lines if "FAKE LINE" in line]
    assert forged_lines and all("refused a" in line and "nope\\n" in line for line in forged_lines)
    assert all(len(line) < 1000 for line in server.lines)


def test_the_rest_client_and_upscale_command_give_the_grpc_answer(server, tmp_path):
    from serving.client import SrganClient
    from serving.client_base import ServingClientError
    from serving.rest_client import SrganRestClient
    images = random_images((2, 11, 6), seed=3)
    target = server.rest.removeprefix("http://")
    with SrganRestClient(target) as rest, SrganClient(server.target) as grpc_client:
        assert rest.wait_until_available()[0]["state"] == "AVAILABLE"
        assert np.array_equal(rest.upscale(images), grpc_client.upscale(images))
        floats = images.astype(np.float32) / 127.5 - 1
        assert np.allclose(rest.predict({"lr": floats}, "predict_float")["sr"],
                           grpc_client.predict({"lr": floats}, "predict_float")["sr"], atol=1e-6)
        assert rest.metadata()["serving_default"]["outputs"] == {"sr_images": "uint8"}
        for client in (SrganRestClient(target, version=99), SrganClient(server.target, version=99)):
            with pytest.raises(ServingClientError) as refused, client:
                client.upscale(images)
            assert refused.value.code == "NOT_FOUND"  # one error type, one status name, whatever the protocol
        assert refused.value.http_status is None and refused.value.message
        with pytest.raises(ServingClientError) as refused:
            SrganRestClient(target, version=99).upscale(images)
        assert refused.value.http_status == 404
    photo = write_image(tmp_path / "in" / "photo.png", random_images((1, 40, 30), seed=4)[0])
    for protocol in ("grpc", "rest"):
        result = run_module("serving.upscale", str(photo), "-o", str(tmp_path / protocol), "--protocol", protocol,
                            "--target", target if protocol == "rest" else server.target)
        assert result.returncode == 0, result.stderr[-2000:]
    same = [np.asarray(Image.open(tmp_path / protocol / "photo_x4.png")) for protocol in ("grpc", "rest")]
    assert same[0].shape == (160, 120, 3) and np.array_equal(*same)


def test_sigterm_lets_the_rest_request_in_flight_finish(exported, tmp_path):
    import concurrent.futures
    import time

    from serving.rest_client import SrganRestClient
    base = tmp_path / "srgan"
    base.mkdir()
    copy_version(exported[0], base, 1)
    port = free_port()
    process = ServerProcess("--model_base_path", str(base), "--rest_api_port", str(port))
    big = random_images((4, 160, 160))  # seconds of JSON and inference on 2 cores: in flight when SIGTERM comes
    with SrganRestClient(f"127.0.0.1:{port}", retries=0) as client, \
            concurrent.futures.ThreadPoolExecutor(1) as pool:
        client.wait_until_available()
        client.upscale(big[:1, :8, :8])  # the signature's types cached, the connection open: the POST goes first
        future = pool.submit(client.upscale, big)
        time.sleep(1.5)  # the request is running in the server now
        code = process.stop()
        assert future.result().shape == (4, 640, 640, 3)  # answered in full, not cut off by the shutdown
    assert code == 0 and "were cut off" not in "".join(process.lines)


def test_bodies_that_would_cost_memory_or_recursion_to_read_are_400(server):
    """20 million empty lists used to take 2 GB and 86 s to parse before the 400; a string nested 900 lists
    deep gave 500 (RecursionError)."""
    flat = b'{"instances": [' + b"[]," * 2_200_000 + b"[]]}"
    started = time.monotonic()
    status, answer = http(server, "POST", "/v1/models/srgan:predict", raw=flat)
    assert status == 400 and "JSON lists and objects" in answer["error"]
    assert time.monotonic() - started < 5
    deep = ('{"signature_name": "predict_encoded", "instances": [' + "[" * 900 + '"x"' + "]" * 900 + "]}").encode()
    status, answer = http(server, "POST", "/v1/models/srgan:predict", raw=deep)
    assert status == 400 and "nested too deep" in answer["error"], answer


def test_a_client_trickling_its_request_is_cut_off_and_others_are_served(exported, tmp_path):
    """One byte every 0.5 s kept a connection forever (waitress only times out silence); 110 such clients
    filled its 100 connections and every REST request timed out."""
    import socket
    base = repository_with(exported[0], tmp_path)
    port = free_port()
    process = ServerProcess("--model_base_path", str(base), "--rest_api_port", str(port),
                            "--rest_api_read_seconds", "2")
    slow = [socket.create_connection(("127.0.0.1", port)) for _ in range(110)]
    try:
        for connection in slow:
            connection.sendall(b"P")
        cut, started = set(), time.monotonic()
        while len(cut) < len(slow) and time.monotonic() - started < 10:
            time.sleep(0.5)
            for index, connection in enumerate(slow):
                if index not in cut:
                    try:
                        connection.sendall(b"O")
                    except OSError:
                        cut.add(index)
        assert len(cut) == len(slow)  # every trickling connection was closed by the server
        assert time.monotonic() - started < 10
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models/srgan", timeout=10) as answer:
            assert answer.status == 200
        # Silent clients too: part of a body, or a body promised by `Expect: 100-continue`, then nothing.
        silent = [b"POST /v1/models/srgan:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"inst",
                  b"GET /v1/models/srgan HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"]
        for request in silent:
            with socket.create_connection(("127.0.0.1", port)) as connection:
                connection.sendall(request)
                connection.settimeout(30)
                sent = time.monotonic()
                while True:  # read until the server closes (a "100 Continue" may come first)
                    try:
                        if not connection.recv(4096):
                            break
                    except (ConnectionResetError, TimeoutError):
                        break
                assert time.monotonic() - sent < 2 + 1.5, request  # --rest_api_read_seconds, and maintenance's beat
    finally:
        for connection in slow:
            connection.close()
        assert process.stop() == 0
