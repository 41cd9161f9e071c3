"""Server-side batching: concurrent requests for the same version, signature and image size run as one batch.

On a machine with few cores, running concurrent requests side by side makes threads fight over the cores;
one batch uses them fully. A worker takes the oldest request, waits up to `timeout_s` for compatible ones
(same servable, signature, dtype and H×W) until `max_batch_size` images are gathered, runs them together and
hands each caller its slice. TF Serving's `max_batch_size`, `batch_timeout_micros` and `num_batch_threads`.
A request whose client has gone (cancelled, or past its deadline) is dropped when the batch is formed, so
it costs no computation.
"""

import collections
import concurrent.futures
import dataclasses
import logging
import threading
import time
from collections.abc import Callable

import numpy as np

from core import contract
from serving.metrics import METRICS

log = logging.getLogger("serving.batching")


class Abandoned(Exception):
    """The caller went away before its batch ran."""


@dataclasses.dataclass(eq=False)  # compared by identity: comparing the arrays would be wrong and slow
class _Task:
    servable: object
    signature: str
    key: str
    array: np.ndarray
    future: concurrent.futures.Future
    wanted: Callable[[], bool] = lambda: True  # False once the client has cancelled or its deadline passed
    deadline: float | None = None  # time.monotonic() when its computation must stop

    @property
    def group(self):
        return (id(self.servable), self.signature, self.key, self.array.dtype.str, self.array.shape[1:])


class Batcher:
    def __init__(self, max_batch_size: int = contract.MAX_BATCH_SIZE,
                 timeout_s: float = contract.BATCH_TIMEOUT_MICROS / 1e6,
                 threads: int = 1):
        self.max_batch_size = max_batch_size
        self.timeout_s = timeout_s
        self._queue: collections.deque[_Task] = collections.deque()
        self._ready = threading.Condition()
        self._closed = False
        self._workers = [threading.Thread(target=self._work, name=f"batcher-{i}", daemon=True)
                         for i in range(threads)]
        for worker in self._workers:
            worker.start()

    def run(self, servable, signature: str, inputs: dict, wanted: Callable[[], bool] = lambda: True,
            deadline: float | None = None) -> dict:
        """Run through a batch when the request has one batchable input; directly otherwise. `wanted()`
        says whether the caller still waits for the answer; a batch computes until its last member's deadline
        (the others have given up by then)."""
        if len(inputs) != 1:
            return servable.runner.run(signature, inputs, deadline)
        (key, array), = inputs.items()
        if array.ndim != 4 or array.shape[0] >= self.max_batch_size:
            return servable.runner.run(signature, inputs, deadline)
        task = _Task(servable, signature, key, array, concurrent.futures.Future(), wanted, deadline)
        with self._ready:
            if self._closed:
                return servable.runner.run(signature, inputs, deadline)
            self._queue.append(task)
            self._ready.notify()
        return task.future.result()

    def _take_batch(self) -> list[_Task] | None:
        """The next batch (possibly empty when all of it was abandoned), or None once closed and drained."""
        with self._ready:
            while not self._queue and not self._closed:
                self._ready.wait()
            if not self._queue:
                return None
            first = self._queue.popleft()
            batch, size = [first], first.array.shape[0]
            deadline = time.monotonic() + self.timeout_s
            while size < self.max_batch_size:
                match = next((t for t in self._queue if t.group == first.group
                              and size + t.array.shape[0] <= self.max_batch_size), None)
                if match is not None:
                    self._queue.remove(match)
                    batch.append(match)
                    size += match.array.shape[0]
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed:
                    break
                self._ready.wait(remaining)
            return self._drop_unwanted(batch)

    @staticmethod
    def _drop_unwanted(batch: list[_Task]) -> list[_Task]:
        kept = [t for t in batch if t.wanted()]
        for task in batch:
            if task not in kept:
                task.future.set_exception(Abandoned())
        if len(kept) < len(batch):
            log.info("dropped %d request(s) whose client cancelled or whose deadline passed", len(batch) - len(kept))
        return kept

    def _work(self) -> None:
        while True:
            batch = self._take_batch()
            if batch is None:
                return
            if not batch:
                continue  # every request of this batch was abandoned
            first = batch[0]
            try:  # whatever happens, every caller of the batch gets an answer and the worker lives on
                arrays = [t.array for t in batch]
                merged = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
                METRICS.batch_size.labels(first.servable.name, first.signature).observe(merged.shape[0])
                deadlines = [t.deadline for t in batch]
                deadline = None if None in deadlines else max(deadlines)
                outputs = first.servable.runner.run(first.signature, {first.key: merged}, deadline)
                offset = 0
                for task in batch:
                    n = task.array.shape[0]
                    task.future.set_result({k: v[offset:offset + n] for k, v in outputs.items()})
                    offset += n
            except Exception as error:  # hand the failure to every caller of the batch
                for task in batch:
                    if not task.future.done():
                        task.future.set_exception(error)

    def close(self) -> None:
        """Finish what is queued, then stop the workers; anything still queued after that is failed."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()
        for worker in self._workers:
            worker.join(timeout=30)
        with self._ready:
            while self._queue:
                self._queue.popleft().future.set_exception(RuntimeError("the server is shutting down"))
