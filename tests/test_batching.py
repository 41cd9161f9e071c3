import concurrent.futures

import numpy as np

from serving.batching import Batcher
from serving.servable import Servable


def test_concurrent_mixed_shapes_are_batched_and_each_caller_gets_its_own_answer(exported):
    servable = Servable.load("srgan", 1, exported[0], "onnx")
    rng = np.random.default_rng(0)
    shapes = [(1, 8, 8), (2, 12, 16), (3, 16, 16), (1, 20, 9), (9, 4, 4)]  # 9 ≥ max batch: runs on its own
    inputs = [rng.integers(0, 256, (*shapes[i % len(shapes)], 3), dtype=np.uint8) for i in range(40)]
    batched_sizes = []
    runner = servable.runner

    class CountingRunner:
        def run(self, signature, feed, deadline=None):
            batched_sizes.append(feed["images"].shape[0])
            return runner.run(signature, feed)

    servable.runner = CountingRunner()
    batcher = Batcher(max_batch_size=8, timeout_s=0.02, threads=1)
    try:
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            results = list(pool.map(lambda x: batcher.run(servable, "serving_default", {"images": x}), inputs))
    finally:
        batcher.close()
    for images, result in zip(inputs, results):
        expected = runner.run("serving_default", {"images": images})["sr_images"]
        assert result["sr_images"].shape == expected.shape
        assert np.abs(result["sr_images"].astype(int) - expected).max() <= 1
    assert max(batched_sizes) > 3  # some requests really were merged
    assert all(size <= 9 for size in batched_sizes)


def test_the_batch_gain_measured_at_load_is_single_time_over_batch_time():
    """A runner whose call costs the same whatever the batch gains 8× from batches of 8; one whose cost is per
    image gains nothing. The real model's figure goes into the load's log line (test_deadlines checks it)."""
    import time

    from serving.servable import describe_batch_gain
    from serving.servable import BATCH_PROBE, batch_gain

    class Sleeping:
        def __init__(self, per_call, per_image):
            self.per_call, self.per_image = per_call, per_image

        def run(self, signature, feed, deadline=None):
            time.sleep(self.per_call + self.per_image * feed["images"].shape[0])
            return {}

    # Sleeps of tens of milliseconds: a busy machine's wake-up delays stay small beside them.
    assert abs(batch_gain(Sleeping(0.05, 0.0)) - BATCH_PROBE) < 1.5
    assert abs(batch_gain(Sleeping(0.0, 0.02)) - 1.0) < 0.2
    assert "costs here" in describe_batch_gain(0.8) and "pays here" in describe_batch_gain(1.3)
    assert "little difference" in describe_batch_gain(1.0)
