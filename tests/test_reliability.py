"""Load, faults and bad input: the server keeps answering correctly, training and export lose no work.

Everything runs on 127.0.0.1, bounded in requests and time. Each test prints its figures (pytest -s shows them);
the README's reliability section quotes one run.
"""

import concurrent.futures
import json
import random
import shutil
import socket
import struct
import subprocess
import sys
import time
import zlib

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import model_management_pb2, model_service_pb2_grpc
from tensorflow_serving.config import model_server_config_pb2

from export.run import ExportConfig, export
from serving.client import SrganClient
from serving.onnx_runtime import create_session
from serving.process import free_port
from tests.helpers import REPO, ServerProcess, copy_version, raw_predict, tiny_run_args, write_image


def _healthy(target) -> bool:
    with grpc.insecure_channel(target) as channel:
        answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    return answer.status == health_pb2.HealthCheckResponse.SERVING


def _rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def test_many_concurrent_clients_with_mixed_shapes_get_correct_answers(repository, exported):
    server = ServerProcess("--model_base_path", str(repository), "--enable_batching", "--max_batch_size", "8")
    session = create_session(exported[0] / "model.onnx")
    rng = np.random.default_rng(0)
    shapes = [(1, 8, 8), (2, 12, 16), (3, 16, 16), (1, 20, 9)]
    inputs = [rng.integers(0, 256, (*shapes[i % len(shapes)], 3), dtype=np.uint8) for i in range(24)]
    expected = [session.run(None, {"images": x})[0] for x in inputs]
    requests, clients = 320, 16

    def client(worker: int) -> tuple[int, int]:
        wrong = 0
        with SrganClient(server.target) as c:
            for i in range(worker, requests, clients):
                got = c.upscale(inputs[i % len(inputs)])
                diff = np.abs(got.astype(int) - expected[i % len(inputs)])
                wrong += int(diff.max() > 1 or (diff == 0).mean() < 0.999)
        return wrong

    try:
        with concurrent.futures.ThreadPoolExecutor(clients) as pool:
            warm = list(pool.map(client, range(clients)))  # one full pass first: caches, pools
            rss_before = _rss_mb(server.proc.pid)
            started = time.perf_counter()
            results = list(pool.map(client, range(clients)))
            seconds = time.perf_counter() - started
        rss_after = _rss_mb(server.proc.pid)
        assert _healthy(server.target)
    finally:
        assert server.stop() == 0
    print(f"\nload: {2 * requests} requests from {clients} clients, {sum(warm) + sum(results)} wrong, "
          f"{requests / seconds:.0f} req/s; server RSS {rss_before:.0f} → {rss_after:.0f} MB")
    assert sum(warm) + sum(results) == 0
    assert rss_after - rss_before < 100  # the second pass grows nothing that the first did not


def test_cancelled_and_expired_requests_leave_the_server_healthy(repository):
    server = ServerProcess("--model_base_path", str(repository))
    images = np.random.default_rng(1).integers(0, 256, (4, 48, 48, 3), dtype=np.uint8)
    try:
        with grpc.insecure_channel(server.target) as channel:
            from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
            from serving import tensors
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            request = predict_pb2.PredictRequest()
            request.model_spec.name = "srgan"
            request.inputs["images"].CopyFrom(tensors.to_proto(images))
            for _ in range(20):  # the client goes away mid-request
                future = stub.Predict.future(request, timeout=30)
                time.sleep(0.01)
                future.cancel()
            with pytest.raises(grpc.RpcError) as expired:
                stub.Predict(request, timeout=0.001)
            assert expired.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert raw_predict(server.target, {"images": images[:1, :8, :8]}).outputs["sr_images"].tensor_shape.dim[1].size == 32
        assert _healthy(server.target)
    finally:
        assert server.stop() == 0
    print("\nfaults: 20 cancelled requests, 1 expired deadline; server healthy afterwards")


def test_a_corrupt_new_version_is_reported_and_the_last_good_one_keeps_serving(repository, exported):
    server = ServerProcess("--model_base_path", str(repository), "--file_system_poll_wait_seconds", "0.2")
    probe = {"images": np.zeros((1, 8, 8, 3), np.uint8)}
    try:
        broken = repository / ".incoming"
        shutil.copytree(exported[0], broken)
        (broken / "saved_model.pb").write_bytes(b"\x00garbage" * 100)
        broken.rename(repository / "2")
        with SrganClient(server.target) as client:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                status = {s["version"]: s for s in client.status()}
                if status.get(2, {}).get("state") == "END":
                    break
                time.sleep(0.1)
        assert status[2]["state"] == "END" and "Failed to load version 2" in status[2]["error"]
        assert status[1]["state"] == "AVAILABLE"
        assert raw_predict(server.target, probe).model_spec.version.value == 1
        shutil.rmtree(repository / "1")  # the served version deleted on disk: it stays in memory
        time.sleep(1.0)
        assert raw_predict(server.target, probe).model_spec.version.value == 1
        assert _healthy(server.target)
    finally:
        assert server.stop() == 0


def test_a_killed_and_restarted_server_is_reached_by_the_clients_retry(repository):
    port = free_port()
    args = ("--model_base_path", str(repository), "--port", str(port))
    first = ServerProcess(*args)
    first.proc.kill()
    first.proc.wait()
    restarted = []

    def restart_later():
        time.sleep(1.0)
        restarted.append(ServerProcess(*args))

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(restart_later)
        with SrganClient(f"127.0.0.1:{port}", retries=8, backoff=0.5) as client:
            started = time.perf_counter()
            out = client.upscale(np.zeros((8, 8, 3), np.uint8))  # sent while nothing listens
            waited = time.perf_counter() - started
        pending.result()
    assert out.shape == (32, 32, 3)
    assert restarted[0].stop() == 0
    print(f"\nrestart: server killed with SIGKILL; the client's retries got through after {waited:.1f} s")


def test_fuzzed_requests_never_break_the_server(repository):
    server = ServerProcess("--model_base_path", str(repository))
    rng = random.Random(7)
    codes: dict[str, int] = {}
    sent = 0
    dtypes = [types_pb2.DT_UINT8, types_pb2.DT_FLOAT, types_pb2.DT_STRING, types_pb2.DT_INT64, types_pb2.DT_HALF,
              types_pb2.DT_BOOL, types_pb2.DT_COMPLEX64, 77]
    try:
        with grpc.insecure_channel(server.target) as channel:
            raw = channel.unary_unary("/tensorflow.serving.PredictionService/Predict")
            deadline = time.monotonic() + 8
            while time.monotonic() < deadline and sent < 400:
                sent += 1
                try:
                    if sent % 2:
                        raw(rng.randbytes(rng.randint(0, 300)), timeout=10)
                    else:
                        shape = [rng.choice([0, 1, 2, 3, 5, 17, -1, 1 << 40]) for _ in range(rng.randint(0, 5))]
                        proto = tensor_pb2.TensorProto(
                            dtype=rng.choice(dtypes), tensor_content=rng.randbytes(rng.randint(0, 64)),
                            tensor_shape=tensor_shape_pb2.TensorShapeProto(
                                dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in shape]))
                        raw_predict(server.target, {rng.choice(["images", "lr", "x"]): proto},
                                    signature=rng.choice(["", "predict_float", "predict_encoded"]))
                    codes["OK"] = codes.get("OK", 0) + 1
                except grpc.RpcError as error:
                    codes[error.code().name] = codes.get(error.code().name, 0) + 1
        assert _healthy(server.target)
        assert raw_predict(server.target, {"images": np.zeros((1, 4, 4, 3), np.uint8)}).outputs
    finally:
        assert server.stop() == 0
    print(f"\nfuzz: {sent} malformed requests, answers {codes}")
    assert set(codes) <= {"INVALID_ARGUMENT", "NOT_FOUND", "INTERNAL", "OK"}  # INTERNAL: unparsable bytes
    assert "UNKNOWN" not in codes


def _listening_addresses(port: int) -> set[str]:
    """Addresses with a listening socket on `port`, from /proc/net/tcp and tcp6 (IPv4-mapped shown as IPv4)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in open(table).readlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state != "0A" or int(hex_port, 16) != port:
                continue
            if len(address) == 32 and address.startswith("0000000000000000FFFF0000"):
                address = address[24:]  # ::ffff:a.b.c.d
            if len(address) == 8:
                found.add(socket.inet_ntoa(struct.pack("<I", int(address, 16))))
            else:
                found.add(socket.inet_ntop(socket.AF_INET6, b"".join(
                    struct.pack("<I", int(address[i:i + 8], 16)) for i in range(0, 32, 8))))
    return found


def test_security_loopback_only_and_no_paths_outside_the_repository(repository, exported, tmp_path):
    outside = tmp_path / "elsewhere"
    shutil.copytree(exported[0], outside)
    (repository / "5").symlink_to(outside, target_is_directory=True)  # a version that leads outside
    server = ServerProcess("--model_base_path", str(repository), "--file_system_poll_wait_seconds", "0.2")
    try:
        port = int(server.target.rsplit(":", 1)[1])
        assert _listening_addresses(port) == {"127.0.0.1"}
        with SrganClient(server.target) as client:
            status = {s["version"]: s for s in client.status()}
        assert status[5]["state"] == "END" and "outside its base path" in status[5]["error"]
        assert status[1]["state"] == "AVAILABLE"
        config = model_server_config_pb2.ModelServerConfig()
        config.model_config_list.config.add(name="etc", base_path="/etc", model_platform="tensorflow")
        with grpc.insecure_channel(server.target) as channel:
            with pytest.raises(grpc.RpcError) as refused:
                model_service_pb2_grpc.ModelServiceStub(channel).HandleReloadConfigRequest(
                    model_management_pb2.ReloadConfigRequest(config=config), timeout=10)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "outside" in refused.value.details()
        empty = model_server_config_pb2.ModelServerConfig()
        empty.model_config_list.SetInParent()  # a list naming no model used to unload everything, answering OK
        with grpc.insecure_channel(server.target) as channel:
            with pytest.raises(grpc.RpcError) as refused:
                model_service_pb2_grpc.ModelServiceStub(channel).HandleReloadConfigRequest(
                    model_management_pb2.ReloadConfigRequest(config=empty), timeout=10)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "names no model" in refused.value.details()
        assert raw_predict(server.target, {"images": np.zeros((1, 4, 4, 3), np.uint8)}).model_spec.version.value == 1
    finally:
        assert server.stop() == 0
    locked = ServerProcess("--model_base_path", str(repository), "--no-enable_reload_config")
    try:
        with grpc.insecure_channel(locked.target) as channel:
            with pytest.raises(grpc.RpcError) as refused:
                model_service_pb2_grpc.ModelServiceStub(channel).HandleReloadConfigRequest(
                    model_management_pb2.ReloadConfigRequest(config=config), timeout=10)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    finally:
        assert locked.stop() == 0


# -- training and export ------------------------------------------------------------------------------------
def test_a_truncated_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, cache_dir):
    from training.config import config_from_args
    from training.run import train
    out = tmp_path / "run"
    train(config_from_args(tiny_run_args(out, cache_dir)))  # checkpoints at steps 2, 4, 6
    for data in (out / "checkpoints").glob("ckpt-6.data-*"):
        data.write_bytes(data.read_bytes()[:50])
    result = subprocess.run([sys.executable, "-m", "training.run", *tiny_run_args(out, cache_dir, "--epochs", "3")],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "ckpt-6 is unreadable" in result.stderr
    assert f"resuming from {out / 'checkpoints' / 'ckpt-4'} (step 4" in result.stdout
    assert json.loads((out / "summary.json").read_text())["steps"] == 2 + 3 * 2


def _png_claiming(width: int, height: int) -> bytes:
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) \
        + chunk(b"IEND", b"")


def test_training_on_a_folder_with_bad_files_uses_the_good_ones_and_reports_the_rest(tmp_path, cache_dir):
    from training.config import config_from_args
    from training.run import train
    folder = tmp_path / "photos"
    rng = np.random.default_rng(3)
    for i in range(8):
        write_image(folder / f"good{i}.jpg", rng.integers(0, 256, (48, 40, 3), dtype=np.uint8))
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    (folder / "empty.png").write_bytes(b"")
    (folder / "huge.png").write_bytes(_png_claiming(30000, 30000))  # 900 Mpx: a decompression bomb
    (folder / "notes.jpg").write_text("meeting notes, not a picture")
    summary = train(config_from_args(tiny_run_args(tmp_path / "run", tmp_path / "cache", "--data-dir", str(folder),
                                                   "--epochs", "1", "--steps-per-epoch", "1")))
    data = summary["data"]
    assert data["kind"] == "folder" and data["used"] == 8 and data["train"] == 3 and data["test"] == 5
    assert data["skipped"] == {"unreadable": 2, "empty file": 1, "too large": 1}
    print(f"\ndata: {data['used']} images used, skipped {data['skipped']}")


EXPORT_STAGES = ["writing the SavedModel", "writing the ONNX files", "measuring parity", "writing the reports"]


@pytest.mark.parametrize("stage", EXPORT_STAGES)
def test_an_export_killed_at_any_stage_leaves_no_partial_version(trained_run, tmp_path, stage):
    """SIGKILL while the export is inside `stage` (it logs each stage as it starts), then export again."""
    model_path = tmp_path / "srgan"
    proc = subprocess.Popen([sys.executable, "-m", "export.to_onnx", "--run-dir", str(trained_run),
                             "--repository", str(tmp_path)], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if stage in line:
            time.sleep(random.Random(stage).uniform(0.0, 0.3))  # somewhere inside the stage, not at its edge
            break
    proc.kill()
    proc.wait()
    assert any(stage in line for line in seen), f"the export never reached {stage!r}:\n" + "".join(seen)
    visible = [p.name for p in model_path.iterdir() if not p.name.startswith(".")]
    if visible:  # the last stage is short: the kill may come after the version was published, complete
        assert visible == ["1"] and json.loads((model_path / "1" / "export.json").read_text())["parity_passed"]
    else:  # killed while writing: the half-written work is hidden, nothing a server would load
        assert [p for p in model_path.iterdir() if p.name.startswith(".staging-")]
    version_dir, report = export(ExportConfig(run_dir=trained_run, repository=tmp_path))
    assert report["passed"] and version_dir.name == str(len(visible) + 1)
    assert sorted(p.name for p in model_path.iterdir()) == [".export.lock", *visible, version_dir.name]  # staging gone


def test_version_folder_names_follow_tf_servings_rule():
    from core.repository import parse_version
    # strings::safe_strto64, as file_system_storage_path_source.cc parses them; positive versions only.
    cases = {"1": 1, "01": 1, " 7 ": 7, "42": 42, str((1 << 63) - 1): (1 << 63) - 1, "99999999999999999999": None,
             "²": None, "٣": None, "1.5": None, "v2": None, "": None, "-3": None, "0": None, ".staging-1": None}
    assert {name: parse_version(name) for name in cases} == cases


def test_odd_names_in_the_repository_never_stop_the_poller(repository, exported, tmp_path):
    base = tmp_path / "srgan"
    base.mkdir()
    copy_version(exported[0], base, 1)
    server = ServerProcess("--model_base_path", str(base), "--file_system_poll_wait_seconds", "0.2")
    probe = {"images": np.zeros((1, 8, 8, 3), np.uint8)}
    try:
        for name in ("²", "٣", "99999999999999999999", "01"):
            shutil.copytree(exported[0], base / name)
        (base / "7").write_text("a file, not a version")
        time.sleep(1.0)  # several polls over the odd names
        assert raw_predict(server.target, probe).model_spec.version.value == 1
        with SrganClient(server.target) as client:
            assert [s["version"] for s in client.status()] == [1]
        assert _healthy(server.target)
        copy_version(exported[0], base, 2)  # a later valid version still loads
        deadline = time.monotonic() + 60
        while raw_predict(server.target, probe).model_spec.version.value != 2:
            assert time.monotonic() < deadline, "version 2 was never served"
            time.sleep(0.2)
        # A repository that cannot be read: health says NOT_SERVING, the loaded version keeps answering.
        base.rename(tmp_path / "away")
        base.write_text("not a folder")
        deadline = time.monotonic() + 30
        while _healthy(server.target):
            assert time.monotonic() < deadline, "health never turned NOT_SERVING"
            time.sleep(0.2)
        assert raw_predict(server.target, probe).model_spec.version.value == 2
        base.unlink()
        (tmp_path / "away").rename(base)
        deadline = time.monotonic() + 30
        while not _healthy(server.target):
            assert time.monotonic() < deadline, "health never came back"
            time.sleep(0.2)
    finally:
        assert server.stop() == 0


def test_upscale_command_survives_bombs_truncated_files_and_reads_16_bit_as_training_does(exported, tmp_path, rng):
    folder = tmp_path / "in"
    good = write_image(folder / "good.png", rng.integers(0, 256, (12, 14, 3), dtype=np.uint8))
    (folder / "bomb.png").write_bytes(_png_claiming(100_000, 100_000))  # 10 gigapixels in 60 bytes
    truncated = write_image(folder / "cut.jpg", rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    truncated.write_bytes(truncated.read_bytes()[:300])
    deep = (np.arange(10 * 11, dtype=np.uint16).reshape(10, 11) * 500).astype(np.uint16)  # uses all 16 bits
    from PIL import Image
    Image.fromarray(deep).save(folder / "deep.png")  # mode I;16
    last = write_image(folder / "z_last.png", rng.integers(0, 256, (9, 9, 3), dtype=np.uint8))
    files = [good, folder / "bomb.png", truncated, folder / "deep.png", last]
    result = subprocess.run([sys.executable, "-m", "serving.upscale", *map(str, files), "-o", str(tmp_path / "out"),
                             "--model-dir", str(exported[0].parent)], cwd=REPO, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "upscaled 3 of 5 images" in result.stdout
    assert "bomb.png: too large" in result.stderr and "cut.jpg: unreadable" in result.stderr
    for name in ("good_x4.png", "deep_x4.png", "z_last_x4.png"):  # files after the bad ones still processed
        assert (tmp_path / "out" / name).exists(), name
    out = np.asarray(Image.open(tmp_path / "out" / "deep_x4.png"))
    eight_bit = np.round(deep / 257.0).astype(np.uint8)  # scaled, not clipped
    expected = create_session(exported[0] / "model.onnx").run(
        None, {"images": np.repeat(eight_bit[None, ..., None], 3, axis=3)})[0][0]
    expected_grey = np.asarray(Image.fromarray(expected).convert("L"))
    assert out.shape == (40, 44) and np.abs(out.astype(int) - expected_grey).max() <= 1
    assert (out == 255).mean() < 0.5  # the old reader clipped almost every pixel to 255


def test_an_expired_request_is_not_computed(repository):
    # A long batching window: the request waits in the queue past its deadline, and is dropped, not run.
    server = ServerProcess("--model_base_path", str(repository), "--enable_batching", "--max_batch_size", "8",
                           "--batch_timeout_micros", "1500000", "--file_system_poll_wait_seconds", "0")
    images = np.zeros((1, 16, 16, 3), np.uint8)
    try:
        with pytest.raises(grpc.RpcError) as expired:
            raw_predict(server.target, {"images": images}, timeout=0.3)
        assert expired.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        deadline = time.monotonic() + 10
        while not any("dropped 1 request" in line for line in server.lines):
            assert time.monotonic() < deadline, "the expired request was not dropped:\n" + "".join(server.lines)
            time.sleep(0.1)
        assert raw_predict(server.target, {"images": images}).model_spec.version.value == 1  # still serving
    finally:
        assert server.stop() == 0


def test_encoded_bombs_are_refused_from_their_headers(repository):
    import io
    from PIL import Image
    server = ServerProcess("--model_base_path", str(repository), "--file_system_poll_wait_seconds", "0",
                           "--max_pixels_per_request", str(1 << 20))
    small = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(small, format="PNG")
    try:
        ok = raw_predict(server.target, {"image_bytes": np.array([small.getvalue()], dtype=object)},
                         signature="predict_encoded")
        assert len(ok.outputs["sr_png_bytes"].string_val) == 1
        rss_before = _rss_mb(server.proc.pid)
        for claim in ((2000, 2000), (20_000, 20_000), (100_000, 100_000)):
            with pytest.raises(grpc.RpcError) as error:
                raw_predict(server.target, {"image_bytes": np.array([_png_claiming(*claim)], dtype=object)},
                            signature="predict_encoded")
            assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "more than the 1048576 pixels" in error.value.details()
        assert _rss_mb(server.proc.pid) - rss_before < 30  # nothing was decoded
        with pytest.raises(grpc.RpcError) as error:
            raw_predict(server.target, {"image_bytes": np.array([small.getvalue()] * 65, dtype=object)},
                        signature="predict_encoded")
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "65 images" in error.value.details()
        with pytest.raises(grpc.RpcError) as error:
            raw_predict(server.target, {"image_bytes": np.array([b"not an image"], dtype=object)},
                        signature="predict_encoded")
        assert "is not a PNG, JPEG, GIF or BMP" in error.value.details()
        assert _healthy(server.target)
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize("backend", ["savedmodel", "onnx"])
def test_a_truncated_image_is_invalid_argument_not_unknown_and_counted_so(repository, backend):
    """The header is fine, the data is cut: the decoder finds it while the model runs. It used to come back as
    UNKNOWN with TensorFlow's "Graph execution error" and be counted OK in the metrics."""
    import io
    import urllib.request

    from PIL import Image
    from serving.process import free_port
    rest_port = free_port()
    server = ServerProcess("--model_base_path", str(repository), "--backend", backend, "--rest_api_port",
                           str(rest_port))
    whole = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(whole, format="PNG")
    truncated = whole.getvalue()[:len(whole.getvalue()) // 2]
    try:
        with pytest.raises(grpc.RpcError) as error:
            raw_predict(server.target, {"image_bytes": np.array([truncated], dtype=object)},
                        signature="predict_encoded")
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT, error.value.details()
        assert "Graph execution error" not in error.value.details()
        with urllib.request.urlopen(f"http://127.0.0.1:{rest_port}/monitoring/prometheus/metrics") as answer:
            metrics = answer.read().decode()
        assert 'status="INVALID_ARGUMENT"' in metrics
        assert _healthy(server.target)
    finally:
        assert server.stop() == 0


def _peak_rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def test_a_memory_budget_queues_concurrent_large_requests_and_bounds_peak_memory(repository):
    budget_mb, overhead_mb = 250, 150  # one 600² request of the tiny model is estimated at ~245 MB
    server = ServerProcess("--model_base_path", str(repository), "--file_system_poll_wait_seconds", "0",
                           "--max_inflight_bytes", str(budget_mb << 20), "--grpc_max_threads", "8")
    images = np.random.default_rng(2).integers(0, 256, (1, 600, 600, 3), dtype=np.uint8)
    try:
        assert "memory budget for requests in flight: 250 MB" in "".join(server.lines)
        raw_predict(server.target, {"images": images[:, :300, :300]})  # warm: allocator, thread pools
        with open(f"/proc/{server.proc.pid}/clear_refs", "w") as marks:
            marks.write("5")  # the server's peak-RSS mark starts again from now
        rss_before = _rss_mb(server.proc.pid)
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda _: raw_predict(server.target, {"images": images}, timeout=120),
                                    range(4)))
        growth = _peak_rss_mb(server.proc.pid) - rss_before
        assert all(a.outputs["sr_images"].tensor_shape.dim[1].size == 2400 for a in answers)
        with pytest.raises(grpc.RpcError) as error:  # one that can never fit is refused at once
            raw_predict(server.target, {"images": np.zeros((1, 1000, 1000, 3), np.uint8)})
        assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "--max_inflight_bytes" in error.value.details()
    finally:
        assert server.stop() == 0
    print(f"\nbudget {budget_mb} MB: 4 concurrent 600² requests answered, peak server RSS +{growth:.0f} MB")
    assert growth < budget_mb + overhead_mb


def test_the_derived_pixel_limit_follows_the_versions_loaded(repository, exported):
    """The default --max_pixels_per_request is the largest request the budget admits for the versions loaded:
    a version whose spec costs more (its export.json says 64 channels) lowers it once it is loaded."""
    server = ServerProcess("--model_base_path", str(repository), "--file_system_poll_wait_seconds", "0.2",
                           "--max_inflight_bytes", str(250 << 20))
    image = np.zeros((1, 200, 200, 3), np.uint8)  # 40 000 pixels: under the tiny model's limit, over the wide one's
    try:
        assert raw_predict(server.target, {"images": image}).outputs["sr_images"].tensor_shape.dim[1].size == 800
        staging = repository / ".copy-2"
        shutil.copytree(exported[0], staging)
        record = json.loads((staging / "export.json").read_text())
        record["model_spec"]["channels"] = 64
        (staging / "export.json").write_text(json.dumps(record))
        staging.rename(repository / "2")
        deadline = time.monotonic() + 60
        while not any("largest request now" in line for line in server.lines):
            assert time.monotonic() < deadline, "".join(server.lines)
            time.sleep(0.2)
        with pytest.raises(grpc.RpcError) as refused:
            raw_predict(server.target, {"images": image})
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "memory budget" in refused.value.details()
    finally:
        assert server.stop() == 0


def test_the_memory_budget_refuses_when_its_queue_is_full_and_drops_requests_whose_client_left():
    import threading
    from serving.admission import MemoryBudget
    from serving.batching import Abandoned
    from serving.errors import ServingError
    budget = MemoryBudget(100, max_waiting=1)
    release, admitted = threading.Event(), threading.Event()

    def hold():
        with budget.admit(80):
            admitted.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    admitted.wait(10)
    gone = threading.Event()
    waiter_result = []

    def wait_then_leave():
        try:
            with budget.admit(50, still_wanted=lambda: not gone.is_set()):
                waiter_result.append("ran")
        except Abandoned:
            waiter_result.append("abandoned")

    waiter = threading.Thread(target=wait_then_leave)
    waiter.start()
    time.sleep(0.2)  # the waiter is now queued: a second one finds the queue full
    with pytest.raises(ServingError) as full:
        with budget.admit(50):
            pass
    assert full.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED and "already waiting" in full.value.message
    gone.set()
    waiter.join(10)
    assert waiter_result == ["abandoned"]
    release.set()
    holder.join(10)
    with budget.admit(100):  # everything released: the whole budget is free again
        assert budget.in_flight_bytes == 100
    assert budget.in_flight_bytes == 0 and budget.peak_in_flight == 100
