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
