"""Load, faults and bad input: the server keeps answering correctly, training and export lose no work.

Everything runs on 127.0.0.1, bounded in requests and time. Each test prints its figures (pytest -s shows them);
docs/reliability.md quotes one run; hostile inputs, the memory budget and deadlines have modules of their own.
"""

import concurrent.futures
import shutil
import subprocess
import sys
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

from serving.client import SrganClient
from serving.onnx_runtime import create_session
from serving.process import free_port
from tests.helpers import REPO, ServerProcess, healthy, raw_predict, rss_mb


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
            rss_before = rss_mb(server.proc.pid)
            started = time.perf_counter()
            results = list(pool.map(client, range(clients)))
            seconds = time.perf_counter() - started
        rss_after = rss_mb(server.proc.pid)
        assert healthy(server.target)
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
        assert healthy(server.target)
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
        assert healthy(server.target)
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


def test_a_server_started_by_a_process_that_is_killed_goes_with_it(repository):
    """An export killed during its infra validation (SIGKILL: no clean-up runs) leaves no server behind."""
    code = ("import time; from serving.process import EmbeddedServer; "
            f"server = EmbeddedServer('--model_base_path', {str(repository)!r}); "
            "print(server.proc.pid, flush=True); time.sleep(600)")
    parent = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    parent.kill()
    parent.wait()
    def running() -> bool:
        try:
            return "zombie" not in Path(f"/proc/{child}/status").read_text()
        except FileNotFoundError:
            return False
    deadline = time.monotonic() + 30
    while running() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not running()
