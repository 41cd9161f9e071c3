"""The embedded server, started as a real process on 127.0.0.1, called with the official stubs."""

import concurrent.futures
import threading
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from google.protobuf import text_format
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2, model_management_pb2,
                                     model_service_pb2_grpc, prediction_service_pb2_grpc)

from serving import tensors
from serving.client import SrganClient
from serving.onnx_runtime import create_session
from tests.helpers import (ServerProcess, copy_version, random_images, raw_predict, repository_with, run_module,
                           write_image)

MAX_MESSAGE = 4_000_000


@pytest.fixture(scope="module")
def repository(exported, tmp_path_factory):
    return repository_with(exported[0], tmp_path_factory.mktemp("repo"))


@pytest.fixture(scope="module")
def server(repository):
    process = ServerProcess("--model_base_path", str(repository), "--enable_batching", "--max_batch_size", "4",
                            "--file_system_poll_wait_seconds", "0.3", "--max_message_bytes", str(MAX_MESSAGE),
                            "--max_pixels_per_request", str(1 << 20), "--max_inflight_bytes", str(200 << 20))
    yield process
    assert process.stop() == 0
    assert "stopped" in "".join(process.lines)


@pytest.mark.parametrize("shape", [(1, 32, 32), (4, 40, 56), (2, 17, 23)])
def test_predict_matches_onnx_runtime_and_the_savedmodel(server, exported, shape):
    images = random_images(shape)
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
        # Every SignatureDef, the init op's included, as TF Serving's get_model_metadata_impl.cc answers.
        assert set(metadata) == {"serving_default", "predict_float", "predict_encoded", "__saved_model_init_op"}
        assert client.status() == [{"version": 1, "state": "AVAILABLE", "error": ""}]


OK_IMAGES = random_images((1, 8, 8))
# TF Serving's answers, case by case: (request, code, message, where TF Serving says it). "ours" marks checks
# that TF Serving leaves to the graph (which fails later, less clearly); the README's table says the same.
BAD_REQUESTS = {
    "unknown model": (dict(inputs={"images": OK_IMAGES}, name="nope"), "NOT_FOUND",
                      "Servable not found for request: Latest(nope)", "core/basic_manager.cc"),
    "empty model name": (dict(inputs={"images": OK_IMAGES}, name=""), "INVALID_ARGUMENT",
                         "ModelSpec has no name specified.", "model_servers/server_core.cc"),
    "unknown version": (dict(inputs={"images": OK_IMAGES}, version=99), "NOT_FOUND",
                        "Servable not found for request: Specific(srgan, 99)", "core/basic_manager.cc"),
    "unknown label": (dict(inputs={"images": OK_IMAGES}, label="canary"), "INVALID_ARGUMENT",
                      "Unrecognized servable version label: canary", "model_servers/server_core.cc"),
    "unknown signature": (dict(inputs={"images": OK_IMAGES}, signature="classify"), "FAILED_PRECONDITION",
                          'Serving signature key "classify" not found.', "servables/tensorflow/predict_util.cc"),
    "input alias not in signature": (dict(inputs={"pixels": OK_IMAGES}), "INVALID_ARGUMENT",
                                     "Signature input alias: images(feed name: ", "tensorflow/cc/saved_model/util.cc"),
    "extra input": (dict(inputs={"images": OK_IMAGES, "mask": OK_IMAGES}), "INVALID_ARGUMENT",
                    "Sent extra: {mask}", "servables/tensorflow/predict_util.cc"),
    "missing input": (dict(inputs={}), "INVALID_ARGUMENT", "Missing but required: {images}",
                      "servables/tensorflow/predict_util.cc"),
    "unknown output_filter": (dict(inputs={"images": OK_IMAGES}, output_filter=["sr"]), "INVALID_ARGUMENT",
                              "output tensor alias not found in signature: sr Outputs expected to be in the set "
                              "{sr_images}.", "servables/tensorflow/predict_util.cc"),
    "duplicate output_filter": (dict(inputs={"images": OK_IMAGES}, output_filter=["sr_images", "sr_images"]),
                                "INVALID_ARGUMENT", "duplicate output tensor alias: sr_images",
                                "servables/tensorflow/predict_util.cc"),
    "wrong dtype": (dict(inputs={"images": OK_IMAGES.astype(np.float32)}), "INVALID_ARGUMENT",
                    "to be uint8 but float is provided", "TensorFlow's executor (the session's feed check)"),
    "wrong rank": (dict(inputs={"images": OK_IMAGES[0]}), "INVALID_ARGUMENT", "must have rank 4", "ours"),
    "wrong channels": (dict(inputs={"images": np.zeros((1, 8, 8, 4), np.uint8)}), "INVALID_ARGUMENT",
                       "must have 3 channels", "ours"),
    "empty batch": (dict(inputs={"images": np.zeros((0, 8, 8, 3), np.uint8)}), "INVALID_ARGUMENT", "is empty",
                    "ours"),
    "zero height": (dict(inputs={"images": np.zeros((1, 0, 8, 3), np.uint8)}), "INVALID_ARGUMENT", "is empty",
                    "ours"),
    "too many pixels": (dict(inputs={"images": np.zeros((1, 1100, 1000, 3), np.uint8)}), "INVALID_ARGUMENT",
                        "more than the 1048576", "ours"),
    "over the memory budget": (dict(inputs={"images": np.zeros((1, 1000, 1000, 3), np.uint8)}),
                               "RESOURCE_EXHAUSTED", "more than the 200 MB of --max_inflight_bytes",
                               "ours (TF Serving has no memory admission)"),
    "NaN in float input": (dict(inputs={"lr": np.full((1, 4, 4, 3), np.nan, np.float32)},
                                signature="predict_float"), "INVALID_ARGUMENT", "NaN or Inf", "ours"),
    "wrong byte count": (dict(inputs={"images": tensor_pb2.TensorProto(
        dtype=types_pb2.DT_UINT8, tensor_shape=tensors.to_proto(OK_IMAGES).tensor_shape,
        tensor_content=b"\x00" * 7)}), "INVALID_ARGUMENT", "tensor_content holds 7 bytes",
        "ours (TF Serving: tensor parsing error)"),
    "oversize message": (dict(inputs={"images": np.zeros((1, 1000, 1400, 3), np.uint8)}),
                         "RESOURCE_EXHAUSTED", "", "gRPC's receive limit"),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_requests_get_tf_servings_answers(server, case):
    kwargs, code, text, _source = BAD_REQUESTS[case]
    with pytest.raises(grpc.RpcError) as error:
        raw_predict(server.target, **kwargs)
    assert error.value.code().name == code
    assert text in error.value.details()
    with grpc.insecure_channel(server.target) as channel:  # and the server stays healthy
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert health.status == health_pb2.HealthCheckResponse.SERVING


STATUS_AND_METADATA = {
    # (call, model name, version, metadata fields, code, message, where TF Serving says it)
    "status of an unknown model": ("status", "nope", None, (), "NOT_FOUND",
                                   "Could not find any versions of model nope", "model_servers/get_model_status_impl.cc"),
    "status of an unknown version": ("status", "srgan", 99, (), "NOT_FOUND", "Could not find version 99 of model srgan",
                                     "model_servers/get_model_status_impl.cc"),
    "metadata of an unknown model": ("metadata", "nope", None, ("signature_def",), "NOT_FOUND",
                                     "Servable not found for request", "core/basic_manager.cc"),
    "metadata without a name": ("metadata", "", None, ("signature_def",), "INVALID_ARGUMENT",
                                "ModelSpec has no name specified.", "model_servers/server_core.cc"),
    "metadata without a field": ("metadata", "srgan", None, (), "INVALID_ARGUMENT",
                                 "GetModelMetadataRequest must specify at least one metadata_field",
                                 "model_servers/get_model_metadata_impl.cc"),
    "metadata of an unknown field": ("metadata", "srgan", None, ("signature_def", "tags"), "INVALID_ARGUMENT",
                                     "Metadata field tags is not supported", "model_servers/get_model_metadata_impl.cc"),
}


@pytest.mark.parametrize("case", sorted(STATUS_AND_METADATA))
def test_status_and_metadata_errors_are_tf_servings(server, case):
    call, name, version, fields, code, text, _source = STATUS_AND_METADATA[case]
    with grpc.insecure_channel(server.target) as channel:
        if call == "status":
            request = get_model_status_pb2.GetModelStatusRequest()
            stub = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus
        else:
            request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=list(fields))
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel).GetModelMetadata
        request.model_spec.name = name
        if version is not None:
            request.model_spec.version.value = version
        with pytest.raises(grpc.RpcError) as error:
            stub(request, timeout=30)
    assert error.value.code().name == code and text in error.value.details()


def test_concurrent_clients_are_batched_and_answered_correctly(server, exported):
    session = create_session(exported[0] / "model.onnx")
    inputs = [random_images((1, 16, 16), seed=i) for i in range(8)]

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
        # A reload whose label names a version that is not AVAILABLE is refused, as server_core.cc does.
        reload = model_management_pb2.ReloadConfigRequest()
        text_format.Parse(config.read_text().replace("value: 2", "value: 7"), reload.config)
        with grpc.insecure_channel(process.target) as channel, pytest.raises(grpc.RpcError) as error:
            model_service_pb2_grpc.ModelServiceStub(channel).HandleReloadConfigRequest(reload, timeout=30)
        assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "Request to assign label to version 7 of model srgan" in error.value.details()
        assert raw_predict(process.target, {"images": OK_IMAGES}, label="canary").model_spec.version.value == 2
    finally:
        assert process.stop() == 0
    # At start too (unless --allow_version_labels_for_unavailable_models, TF Serving's own flag).
    config.write_text(config.read_text().replace("value: 2", "value: 7"))
    refused = run_module("serving.server", "--port", "0", "--model_config_file", str(config), timeout=120)
    assert refused.returncode == 2 and "Request to assign label to version 7" in refused.stderr


def model_config_text(*models: tuple[str, object]) -> str:
    return "model_config_list {" + "".join(f' config {{ name: "{name}" base_path: "{base}" model_platform: '
                                           '"tensorflow" }' for name, base in models) + " }"


def test_reloads_keep_serving_and_names_are_listed_once(exported, tmp_path):
    models = tmp_path / "models"
    old, new = models / "srgan", models / "srgan_next"
    for base, version in ((old, 1), (new, 5)):
        base.mkdir(parents=True)
        copy_version(exported[0], base, version)
    config = tmp_path / "models.config"
    # Listing a model twice is refused at start, as server_core.cc refuses it.
    config.write_text(model_config_text(("srgan", old), ("srgan", new)))
    refused = run_module("serving.server", "--port", "0", "--model_config_file", str(config), timeout=120)
    assert refused.returncode == 2 and "Illegal to list model srgan multiple times in config list" in refused.stderr
    config.write_text(model_config_text(("srgan", old)))
    process = ServerProcess("--model_config_file", str(config), "--file_system_poll_wait_seconds", "0.2")
    codes, stop = [], threading.Event()

    def keep_asking():
        while not stop.is_set():
            try:
                raw_predict(process.target, {"images": OK_IMAGES}, timeout=30)
                codes.append("OK")
            except grpc.RpcError as error:
                codes.append(error.code().name)
    try:
        with grpc.insecure_channel(process.target) as channel:
            stub = model_service_pb2_grpc.ModelServiceStub(channel)
            twice = model_management_pb2.ReloadConfigRequest()
            text_format.Parse(model_config_text(("srgan", old), ("srgan", new)), twice.config)
            with pytest.raises(grpc.RpcError) as error:
                stub.HandleReloadConfigRequest(twice, timeout=30)
            assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "Illegal to list model srgan multiple times" in error.value.details()
            # A new base path for a served name: its old versions answer until the new ones have loaded.
            asker = threading.Thread(target=keep_asking)
            asker.start()
            time.sleep(1.0)
            moved = model_management_pb2.ReloadConfigRequest()
            text_format.Parse(model_config_text(("srgan", new)), moved.config)
            stub.HandleReloadConfigRequest(moved, timeout=120)
            assert raw_predict(process.target, {"images": OK_IMAGES}).model_spec.version.value == 5
            time.sleep(0.5)
            stop.set()
            asker.join(timeout=60)
        assert codes and set(codes) == {"OK"}, sorted(set(codes))
    finally:
        stop.set()
        assert process.stop() == 0


def test_a_linked_base_path_is_followed_where_it_points_now(exported, tmp_path):
    models = tmp_path / "models"
    for release, version in (("release-a", 1), ("release-b", 2)):
        (models / release).mkdir(parents=True)
        copy_version(exported[0], models / release, version)
    (models / "srgan").symlink_to("release-a")
    process = ServerProcess("--model_base_path", str(models / "srgan"), "--file_system_poll_wait_seconds", "0.2")
    try:
        assert raw_predict(process.target, {"images": OK_IMAGES}).model_spec.version.value == 1
        (models / "srgan.next").symlink_to("release-b")
        (models / "srgan.next").replace(models / "srgan")  # the swap git-sync and blue/green scripts make
        deadline = time.monotonic() + 60
        while (raw_predict(process.target, {"images": OK_IMAGES}).model_spec.version.value != 2
               and time.monotonic() < deadline):
            time.sleep(0.2)
        assert raw_predict(process.target, {"images": OK_IMAGES}).model_spec.version.value == 2
    finally:
        assert process.stop() == 0


def test_health_says_not_serving_until_a_version_is_loaded(exported, tmp_path):
    base = tmp_path / "models" / "srgan"
    base.mkdir(parents=True)
    process = ServerProcess("--model_base_path", str(base), "--file_system_poll_wait_seconds", "0.2")
    try:
        assert any("no version of srgan is loaded" in line for line in process.lines)
        with grpc.insecure_channel(process.target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            check = lambda: stub.Check(health_pb2.HealthCheckRequest(), timeout=10).status  # noqa: E731
            assert check() == health_pb2.HealthCheckResponse.NOT_SERVING
            copy_version(exported[0], base, 1)
            deadline = time.monotonic() + 60
            while check() != health_pb2.HealthCheckResponse.SERVING and time.monotonic() < deadline:
                time.sleep(0.2)
            assert check() == health_pb2.HealthCheckResponse.SERVING
    finally:
        assert process.stop() == 0


def test_sigterm_lets_the_request_in_flight_finish(repository):
    process = ServerProcess("--model_base_path", str(repository), "--file_system_poll_wait_seconds", "0")
    big = random_images((4, 96, 96))
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        with SrganClient(process.target) as client:
            future = pool.submit(client.upscale, big)
            time.sleep(0.3)
            code = process.stop()
            assert future.result().shape == (4, 384, 384, 3)
    assert code == 0


def test_upscale_command_through_grpc(server, tmp_path, exported):
    # 130×150 is no multiple of the 24-pixel tile: the last tiles are moved flush with the edges.
    pixels = random_images((1, 130, 150), seed=7)
    image = write_image(tmp_path / "face.png", pixels[0])
    result = run_module("serving.upscale", str(image), "-o", str(tmp_path / "out"), "--backend", "grpc",
                        "--target", server.target, "--tile", "24")
    assert result.returncode == 0, result.stderr
    served = np.asarray(Image.open(tmp_path / "out" / "face_x4.png"))
    reference = create_session(exported[0] / "model.onnx").run(None, {"images": pixels})[0][0]
    assert served.shape == (520, 600, 3) and np.abs(served.astype(int) - reference).max() <= 1


def test_client_file_upscaling_sends_fixed_size_tiles_and_equals_whole_image_inference(server, exported, tmp_path):
    image = np.random.default_rng(5).integers(0, 256, (130, 150, 3), dtype=np.uint8)
    path = write_image(tmp_path / "photo.png", image)
    shapes = []
    with SrganClient(server.target) as client:
        send = client.upscale
        client.upscale = lambda images: shapes.append(images.shape) or send(images)  # a spy on what is sent
        sr = client.upscale_file(path, tile=24)
    whole = create_session(exported[0] / "model.onnx").run(None, {"images": image[None]})[0][0]
    assert sr.shape == (520, 600, 3) and np.abs(sr.astype(int) - whole).max() <= 1
    assert len(shapes) > 1 and len(set(shapes)) == 1


def test_waiting_for_a_server_raises_the_clients_one_error_type():
    from serving.client_base import ServingClientError
    from serving.process import free_port
    from serving.rest_client import SrganRestClient
    port = free_port()  # nobody listens there
    for kind in (SrganClient, SrganRestClient):
        with kind(f"127.0.0.1:{port}", retries=0) as client, pytest.raises(ServingClientError) as late:
            client.wait_until_available(timeout=0.5)
        assert late.value.code == "DEADLINE_EXCEEDED" and "within 0.5 s" in late.value.message
        with kind(f"127.0.0.1:{port}", retries=0) as client, pytest.raises(ServingClientError) as gone:
            client.wait_until_available(timeout=30, give_up=lambda statuses: "the server exited with status 1.")
        assert gone.value.code == "UNAVAILABLE" and gone.value.message == "the server exited with status 1."
