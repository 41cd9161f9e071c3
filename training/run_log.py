"""Where a run's numbers go: a JSON-lines file (one object per record) and TensorBoard."""

import json
import time
from pathlib import Path

import tensorflow as tf


class RunLog:
    def __init__(self, out_dir: Path):
        self.path = Path(out_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.writer = tf.summary.create_file_writer(str(Path(out_dir) / "tensorboard"))

    def scalars(self, step: int, values: dict, prefix: str = "") -> None:
        with self.writer.as_default(step=step):
            for name, value in values.items():
                tf.summary.scalar(prefix + name, value)

    def record(self, kind: str, step: int, values: dict) -> None:
        """A line in metrics.jsonl and the same scalars in TensorBoard."""
        line = {"kind": kind, "step": step, "time": round(time.time(), 3),
                **{k: (float(f"{v:.6g}") if isinstance(v, float) else v) for k, v in values.items()}}
        with self.path.open("a") as f:
            f.write(json.dumps(line) + "\n")
        self.scalars(step, {k: v for k, v in values.items() if isinstance(v, (int, float))}, f"{kind}/")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
