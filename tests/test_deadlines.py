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
