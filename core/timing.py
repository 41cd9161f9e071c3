"""How long a call takes once warm: the one timing loop that training's mode choice, ONNX Runtime's CPU settings
and the server's batching probe share."""

import statistics
import time
from collections.abc import Callable


def median_seconds(call: Callable[[], object], runs: int) -> float:
    """`call()` once untimed (first runs trace, compile, allocate), then the median wall time of `runs` calls."""
    call()
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)
