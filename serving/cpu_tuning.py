"""ONNX Runtime's CPU session settings, chosen by timing them on this machine rather than guessed.

What matters for a stack of convolutions on a CPU: how many intra-op threads (one per physical core, or per
logical core), whether idle threads spin waiting for work (lower latency, burns a core) and whether the graph
is rewritten into ONNX Runtime's blocked NCHWc layout (ORT_ENABLE_ALL) or not (ORT_ENABLE_EXTENDED). Each
candidate runs the model on a small input a few times; the fastest median wins. The result depends on the
processor and on what else runs, so it is measured where the model is served, and recorded.
"""

import dataclasses
import os

import numpy as np
import onnxruntime as ort

from core.timing import median_seconds

LEVELS = {"all (NCHWc layout)": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
          "extended (no layout change)": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED}


@dataclasses.dataclass(frozen=True)
class CpuSettings:
    intra_op_threads: int
    spinning: bool
    optimization: str  # a key of LEVELS

    def options(self) -> ort.SessionOptions:
        options = ort.SessionOptions()
        options.graph_optimization_level = LEVELS[self.optimization]
        options.intra_op_num_threads = self.intra_op_threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.spinning else "0")
        options.log_severity_level = 3
        return options


def physical_cores() -> int:
    """Cores, not hyper-threads: distinct (physical id, core id) pairs in /proc/cpuinfo, else all CPUs."""
    logical = os.cpu_count() or 1
    try:
        pairs, current = set(), {}
        for line in open("/proc/cpuinfo"):
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("physical id", "core id"):
                current[key] = value.strip()
            elif not line.strip():
                if len(current) == 2:
                    pairs.add((current["physical id"], current["core id"]))
                current = {}
        return len(pairs) or logical
    except OSError:
        return logical


def candidates() -> list[CpuSettings]:
    threads = sorted({physical_cores(), os.cpu_count() or 1})
    return [CpuSettings(t, spin, level) for t in threads for spin in (True, False) for level in LEVELS]


def choose(model_path, feed: dict, runs: int = 5) -> tuple[CpuSettings, list[dict]]:
    """The fastest candidate on `feed` (median of `runs` after one warm-up run), and every timing."""
    timings = []
    for settings in candidates():
        session = ort.InferenceSession(str(model_path), settings.options(), providers=["CPUExecutionProvider"])
        seconds = median_seconds(lambda: session.run(None, feed), runs)
        timings.append({**dataclasses.asdict(settings), "median_ms": 1e3 * seconds})
    best = min(timings, key=lambda t: t["median_ms"])
    return CpuSettings(best["intra_op_threads"], best["spinning"], best["optimization"]), timings


def sample_feed(session_or_path, size: int = 32) -> dict:
    """One random input of the model's type at 1×size×size×3."""
    session = (session_or_path if isinstance(session_or_path, ort.InferenceSession)
               else ort.InferenceSession(str(session_or_path), providers=["CPUExecutionProvider"]))
    feed = session.get_inputs()[0]
    rng = np.random.default_rng(0)
    shape = (1, size, size, 3)
    value = (rng.integers(0, 256, shape, dtype=np.uint8) if "uint8" in feed.type
             else rng.uniform(-1, 1, shape).astype(np.float32))
    return {feed.name: value}
