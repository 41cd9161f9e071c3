"""The embedded server, started as a real process on 127.0.0.1, called with the official stubs."""

import concurrent.futures
import threading
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tensorflow.core.framework import tensor_pb2, types_pb2

from serving import tensors
from serving.client import SrganClient
from serving.onnx_runtime import create_session
from tests.conftest import run_module, write_image
from tests.servers import ServerProcess, copy_version, raw_predict

MAX_MESSAGE = 4_000_000


@pytest.fixture(scope="module")
def repository(exported, tmp_path_factory):
    base = tmp_path_factory.mktemp("repo") / "srgan"
    base.mkdir()
    copy_version(exported[0], base, 1)
    return base


@pytest.fixture(scope="module")
def server(repository):
    process = ServerProcess("--model_base_path", str(repository), "--enable_batching", "--max_batch_size", "4",
                            "--file_system_poll_wait_seconds", "0.3", "--max_message_bytes", str(MAX_MESSAGE))
    yield process
    assert process.stop() == 0
    assert "stopped" in "".join(process.lines)


def _images(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (*shape, 3), dtype=np.uint8)


@pytest.mark.parametrize("shape", [(1, 32, 32), (4, 40, 56), (2, 17, 23)])
def test_predict_matches_onnx_runtime_and_the_savedmodel(server, exported, shape):
    images = _images(shape)
    with SrganClient(server.target) as client:
        served = client.upscale(images)
    assert served.shape == (shape[0], 4 * shape[1], 4 * shape[2], 3) and served.dtype == np.uint8
    onnx_out = create_session(exported[0] / "model.onnx").run(None, {"images": images})[0]
    saved = tf.saved_model.load(str(exported[0])).signatures["serving_default"]
    for reference in (onnx_out, saved(images=tf.constant(images))["sr_images"].numpy()):
        diff = np.abs(served.astype(int) - reference)
        assert (diff == 0).mean() >= 0.999 and diff.max() <= 1


def test_float_signature_matches_onnx(server, exported):
    lr = np.random.default_rng(2).uniform(-1, 1, (2, 12, 20, 3)).astype(np.float32)
    with SrganClient(server.target) as client:
        sr = client.predict({"lr": lr}, signature="predict_float")["sr"]
    reference = create_session(exported[0] / "model_float.onnx").run(None, {"lr": lr})[0]
    assert np.abs(sr - reference).max() <= 1e-4


def test_metadata_and_status(server):
    with SrganClient(server.target) as client:
        metadata = client.metadata()
        assert metadata["serving_default"] == {"inputs": {"images": "uint8"}, "outputs": {"sr_images": "uint8"}}
        assert set(metadata) == {"serving_default", "predict_float", "predict_encoded"}
        assert client.status() == [{"version": 1, "state": "AVAILABLE", "error": ""}]


OK_IMAGES = _images((1, 8, 8))
BAD_REQUESTS = {
    "unknown model": (dict(inputs={"images": OK_IMAGES}, name="nope"), "NOT_FOUND", "Servable not found"),
    "unknown version": (dict(inputs={"images": OK_IMAGES}, version=99), "NOT_FOUND", "Specific(srgan, 99)"),
    "unknown label": (dict(inputs={"images": OK_IMAGES}, label="canary"), "NOT_FOUND", "version label: canary"),
    "unknown signature": (dict(inputs={"images": OK_IMAGES}, signature="classify"), "NOT_FOUND",
                          'signature key "classify" not found'),
    "wrong dtype": (dict(inputs={"images": OK_IMAGES.astype(np.float32)}), "INVALID_ARGUMENT",
                    "to be uint8 but float is provided"),
    "wrong rank": (dict(inputs={"images": OK_IMAGES[0]}), "INVALID_ARGUMENT", "must have rank 4"),
    "wrong channels": (dict(inputs={"images": np.zeros((1, 8, 8, 4), np.uint8)}), "INVALID_ARGUMENT",
                       "must have 3 channels"),
    "empty batch": (dict(inputs={"images": np.zeros((0, 8, 8, 3), np.uint8)}), "INVALID_ARGUMENT", "is empty"),
    "zero height": (dict(inputs={"images": np.zeros((1, 0, 8, 3), np.uint8)}), "INVALID_ARGUMENT", "is empty"),
    "too many pixels": (dict(inputs={"images": np.zeros((1, 1100, 1000, 3), np.uint8)}), "INVALID_ARGUMENT",
                        "more than the 1048576"),
    "NaN in float input": (dict(inputs={"lr": np.full((1, 4, 4, 3), np.nan, np.float32)},
                                signature="predict_float"), "INVALID_ARGUMENT", "NaN or Inf"),
    "extra input": (dict(inputs={"images": OK_IMAGES, "mask": OK_IMAGES}), "INVALID_ARGUMENT",
                    "Sent extra: {mask}"),
    "missing input": (dict(inputs={}), "INVALID_ARGUMENT", "Missing but required: {images}"),
    "wrong byte count": (dict(inputs={"images": tensor_pb2.TensorProto(
        dtype=types_pb2.DT_UINT8, tensor_shape=tensors.to_proto(OK_IMAGES).tensor_shape,
        tensor_content=b"\x00" * 7)}), "INVALID_ARGUMENT", "tensor_content holds 7 bytes"),
    "oversize message": (dict(inputs={"images": np.zeros((1, 1000, 1400, 3), np.uint8)}),
                         "RESOURCE_EXHAUSTED", ""),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_requests_get_tf_servings_status_codes(server, case):
    kwargs, code, text = BAD_REQUESTS[case]
    with pytest.raises(grpc.RpcError) as error:
        raw_predict(server.target, **kwargs)
    assert error.value.code().name == code
    assert text in error.value.details()
    with grpc.insecure_channel(server.target) as channel:  # and the server stays healthy
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert health.status == health_pb2.HealthCheckResponse.SERVING


def test_concurrent_clients_are_batched_and_answered_correctly(server, exported):
    session = create_session(exported[0] / "model.onnx")
    inputs = [_images((1, 16, 16), seed=i) for i in range(8)]

    def call(images):
        with SrganClient(server.target) as client:
            return client.upscale(images)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(call, inputs))
    for images, served in zip(inputs, results):
        diff = np.abs(served.astype(int) - session.run(None, {"images": images})[0])
        assert (diff == 0).mean() >= 0.999 and diff.max() <= 1


def test_a_new_version_is_served_without_a_failed_request(server, repository, exported):
    errors, versions_seen, stop = [], set(), threading.Event()

    def keep_calling():
        while not stop.is_set():
            try:
                response = raw_predict(server.target, {"images": OK_IMAGES})
                versions_seen.add(response.model_spec.version.value)
            except grpc.RpcError as error:
                errors.append(error)

    callers = [threading.Thread(target=keep_calling) for _ in range(3)]
    for caller in callers:
        caller.start()
    time.sleep(1.0)
    copy_version(exported[0], repository, 2)
    with SrganClient(server.target) as client:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            states = {s["version"]: s["state"] for s in client.status()}
            if states.get(2) == "AVAILABLE" and states.get(1) == "END":
                break
            time.sleep(0.2)
    time.sleep(1.0)
    stop.set()
    for caller in callers:
        caller.join()
    assert states == {1: "END", 2: "AVAILABLE"}
    assert not errors, errors[0]
    assert versions_seen == {1, 2}


def test_version_labels_and_explicit_versions_with_a_model_config_file(repository, exported, tmp_path):
    base = tmp_path / "srgan"
    base.mkdir()
    for version in (1, 2):
        copy_version(exported[0], base, version)
    config = tmp_path / "models.config"
    config.write_text(f'''model_config_list {{
  config {{
    name: "srgan"
    base_path: "{base}"
    model_platform: "tensorflow"
    model_version_policy {{ all {{}} }}
    version_labels {{ key: "stable" value: 1 }}
    version_labels {{ key: "canary" value: 2 }}
  }}
}}''')
    process = ServerProcess("--model_config_file", str(config))
    try:
        assert raw_predict(process.target, {"images": OK_IMAGES}).model_spec.version.value == 2
        assert raw_predict(process.target, {"images": OK_IMAGES}, label="stable").model_spec.version.value == 1
        assert raw_predict(process.target, {"images": OK_IMAGES}, version=1).model_spec.version.value == 1
        with SrganClient(process.target, version_label="canary") as client:
            assert client.upscale(OK_IMAGES[0]).shape == (32, 32, 3)
            assert {s["version"] for s in client.status()} == {1, 2}
    finally:
        assert process.stop() == 0


def test_sigterm_lets_the_request_in_flight_finish(repository):
    process = ServerProcess("--model_base_path", str(repository), "--file_system_poll_wait_seconds", "0")
    big = _images((4, 96, 96))
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        with SrganClient(process.target) as client:
            future = pool.submit(client.upscale, big)
            time.sleep(0.3)
            code = process.stop()
            assert future.result().shape == (4, 384, 384, 3)
    assert code == 0


def test_upscale_command_through_grpc(server, tmp_path, exported):
    image = write_image(tmp_path / "face.png", _images((1, 30, 22))[0])
    result = run_module("serving.upscale", str(image), "-o", str(tmp_path / "out"), "--backend", "grpc",
                        "--target", server.target)
    assert result.returncode == 0, result.stderr
    served = np.asarray(Image.open(tmp_path / "out" / "face_x4.png"))
    reference = create_session(exported[0] / "model.onnx").run(None, {"images": _images((1, 30, 22))})[0][0]
    assert np.abs(served.astype(int) - reference).max() <= 1
