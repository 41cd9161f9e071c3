"""Admission by memory: requests in flight hold at most --max_inflight_bytes of estimated memory."""

import concurrent.futures
import json
import shutil
import time

import grpc
import numpy as np
import pytest

from tests.helpers import ServerProcess, peak_rss_mb, raw_predict, rss_mb


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
        rss_before = rss_mb(server.proc.pid)
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda _: raw_predict(server.target, {"images": images}, timeout=120),
                                    range(4)))
        growth = peak_rss_mb(server.proc.pid) - rss_before
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
