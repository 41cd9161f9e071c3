"""Compute bounded like memory: a deadline ends the work, and shutdown ends in bounded time.

The server's CPU time is read from /proc, not guessed from wall-clock: after a request's deadline the process
must stop computing (tile-sized work may finish), on both backends.
"""

import os
import signal
import threading
import time

import grpc
import numpy as np
import pytest

from tests.helpers import ServerProcess, raw_predict

BIG = np.zeros((1, 2048, 2048, 3), np.uint8)  # seconds of work even for the tests' tiny generator
BIG_LIMITS = ("--max_pixels_per_request", str(1 << 23), "--max_inflight_bytes", str(8 << 30))


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


@pytest.mark.parametrize("backend", ["savedmodel", "onnx"])
def test_a_request_past_its_deadline_stops_computing(repository, backend):
    """Admitted (admission by time off), it runs into its deadline: the work stops there."""
    server = ServerProcess("--model_base_path", str(repository), "--backend", backend, "--no-admission_by_time",
                           *BIG_LIMITS)
    try:
        with pytest.raises(grpc.RpcError) as expired:
            raw_predict(server.target, {"images": BIG}, timeout=1.0)
        assert expired.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        time.sleep(1.0)  # the work running at the deadline ends (a terminated window, an aborted Session run)
        before = cpu_seconds(server.proc.pid)
        time.sleep(2.0)
        assert cpu_seconds(server.proc.pid) - before < 0.3  # idle: nobody is computing an unread answer
        small = raw_predict(server.target, {"images": BIG[:, :8, :8]})
        assert small.outputs["sr_images"].tensor_shape.dim[1].size == 32
    finally:
        assert server.stop() == 0


def test_a_request_that_cannot_finish_in_time_is_refused_before_computing(repository):
    server = ServerProcess("--model_base_path", str(repository), *BIG_LIMITS)
    try:
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as refused:
            raw_predict(server.target, {"images": BIG}, timeout=1.0)
        assert time.monotonic() - started < 0.9  # answered before the deadline: nothing was computed
        assert refused.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED and "needs about" in refused.value.details()
        assert any("per input pixel here" in line for line in server.lines)  # the speed measured at load
        assert any("as fast as one by one" in line for line in server.lines)  # and what batching gains
    finally:
        assert server.stop() == 0


def test_a_request_without_deadline_is_bounded_by_the_server(repository):
    server = ServerProcess("--model_base_path", str(repository), "--max_request_seconds", "1",
                           "--no-admission_by_time", *BIG_LIMITS)
    try:
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as expired:
            raw_predict(server.target, {"images": BIG}, timeout=None)
        assert expired.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "--max_request_seconds" in expired.value.details()
        assert time.monotonic() - started < 10
    finally:
        assert server.stop() == 0


def test_sigterm_ends_the_process_in_bounded_time_whatever_is_running(repository):
    server = ServerProcess("--model_base_path", str(repository), "--drain_seconds", "1", *BIG_LIMITS)
    outcome = {}

    def call():
        try:
            raw_predict(server.target, {"images": np.concatenate([BIG] * 2)}, timeout=120)
            outcome["code"] = "OK"
        except grpc.RpcError as error:
            outcome["code"] = error.code().name

    caller = threading.Thread(target=call)
    caller.start()
    time.sleep(1.5)  # the request is computing
    sent = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    status = server.proc.wait(timeout=30)
    assert time.monotonic() - sent < 1 + 2 + 1  # --drain_seconds + the margin + slack for a loaded machine
    assert status == 1  # a request was cut short: not a clean exit
    caller.join(timeout=30)
    assert outcome["code"] in ("UNAVAILABLE", "CANCELLED")
    assert any("cutting short 1 request" in line for line in server.lines)


def test_admission_by_time_counts_the_windows_computed_and_the_work_already_running(repository):
    """The estimate is the request's own windows (context included) at the speed measured at load, plus the work
    admitted before it: a request that would fit its deadline on an idle server is refused behind a big one."""
    import re

    from core.export_record import ExportRecord
    from serving.tiling import computed_pixels
    server = ServerProcess("--model_base_path", str(repository), *BIG_LIMITS)
    try:
        (speed,) = [float(m.group(1)) for line in server.lines
                    if (m := re.search(r"([0-9.]+) µs per input pixel here", line))]
        _, tile, overlap = ExportRecord.load(repository / "1").window_plan()
        alone = speed * 1e-6 * computed_pixels(2048, 2048, tile, overlap)  # what BIG costs on an idle server
        assert computed_pixels(2048, 2048, tile, overlap) > 2048 * 2048  # the windows' context counts
        first = threading.Thread(target=lambda: raw_predict(server.target, {"images": BIG}, timeout=600))
        first.start()
        time.sleep(0.3)  # admitted and computing (it takes about `alone` seconds)
        with pytest.raises(grpc.RpcError) as refused:
            raw_predict(server.target, {"images": BIG}, timeout=0.75 * alone)  # would be admitted alone
        assert refused.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "for requests already running" in refused.value.details(), refused.value.details()
        first.join(timeout=600)
    finally:
        assert server.stop() == 0


def test_health_answers_within_a_second_while_every_predict_thread_computes(repository):
    """The pool has RESERVED_THREADS threads beyond --grpc_max_threads that Predicts never take, so health checks
    (a Kubernetes gRPC probe: one second) are answered however many Predicts arrive; those beyond get
    RESOURCE_EXHAUSTED."""
    from concurrent.futures import ThreadPoolExecutor

    from grpc_health.v1 import health_pb2, health_pb2_grpc
    server = ServerProcess("--model_base_path", str(repository), "--grpc_max_threads", "2",
                           "--no-admission_by_time", *BIG_LIMITS)

    def predict():
        try:
            raw_predict(server.target, {"images": BIG}, timeout=120)
            return "OK"
        except grpc.RpcError as error:
            return error.code().name, error.details()
    try:
        with ThreadPoolExecutor(6) as pool, grpc.insecure_channel(server.target) as channel:
            answers = [pool.submit(predict) for _ in range(6)]
            time.sleep(1.0)  # two are computing, the others refused
            health = health_pb2_grpc.HealthStub(channel)
            checks = []
            for _ in range(5):
                started = time.monotonic()
                status = health.Check(health_pb2.HealthCheckRequest(), timeout=1.0).status
                checks.append((status, time.monotonic() - started))
                time.sleep(0.2)
            results = [a.result(timeout=300) for a in answers]
        assert all(status == health_pb2.HealthCheckResponse.SERVING and took < 1.0 for status, took in checks)
        assert results.count("OK") >= 2
        refused = [r for r in results if r != "OK"]
        assert refused and all(code == "RESOURCE_EXHAUSTED" and "all 2 GRPC request threads are computing" in details
                               for code, details in refused)
    finally:
        assert server.stop() == 0
