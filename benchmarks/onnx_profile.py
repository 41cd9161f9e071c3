"""ONNX Runtime's per-operator profile of one or more ONNX files, side by side.

    python benchmarks/onnx_profile.py models/srgan/1/model.onnx models/srgan/3/model.onnx --size 32 --batch 1

For each file: a CPU session (graph optimisations on, as the server runs it) with ONNX Runtime's profiler,
--warmup untimed runs, then --runs profiled ones on one random uint8 (or float) input. Per operator type of the
optimised graph: time per run, share of the total, node count; and the median wall time per run. Writes
onnx_profile.json, .md and .png to --out. Needs only onnxruntime and numpy.
"""

import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import repo_path  # noqa: F401  (first: the packages importable, TensorFlow quiet)
from core.cli import parser


@dataclasses.dataclass(frozen=True)
class ProfileConfig:
    models: tuple[Path, ...]
    size: int = 32
    batch: int = 1
    runs: int = 20
    warmup: int = 3
    threads: int = 0  # 0: ONNX Runtime's default (one per physical core)
    out: Path = Path("results/onnx_profile")


def parse_args(argv=None) -> ProfileConfig:
    d = ProfileConfig(())
    p = parser("python benchmarks/onnx_profile.py", __doc__)
    p.add_argument("models", nargs="+", type=Path, help="ONNX files")
    p.add_argument("--size", type=int, default=d.size, help="input side in pixels")
    p.add_argument("--batch", type=int, default=d.batch)
    p.add_argument("--runs", type=int, default=d.runs)
    p.add_argument("--warmup", type=int, default=d.warmup)
    p.add_argument("--threads", type=int, default=d.threads)
    p.add_argument("--out", type=Path, default=d.out)
    a = p.parse_args(argv)
    return ProfileConfig(tuple(a.models), a.size, a.batch, a.runs, a.warmup, a.threads, a.out)


def profile(path: Path, config: ProfileConfig) -> dict:
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = config.threads
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = session.get_inputs()[0]
    shape = (config.batch, config.size, config.size, 3)
    rng = np.random.default_rng(0)
    x = (rng.integers(0, 256, shape, dtype=np.uint8) if "uint8" in feed.type
         else rng.uniform(-1, 1, shape).astype(np.float32))
    for _ in range(config.warmup):
        session.run(None, {feed.name: x})
    profiled = ort.SessionOptions()
    profiled.graph_optimization_level = options.graph_optimization_level
    profiled.intra_op_num_threads = config.threads
    profiled.log_severity_level = 3
    profiled.enable_profiling = True
    profiled.profile_file_prefix = os.path.join(tempfile.mkdtemp(prefix="ort-profile-"), "profile")
    session = ort.InferenceSession(str(path), profiled, providers=["CPUExecutionProvider"])
    for _ in range(config.warmup):
        session.run(None, {feed.name: x})
    walls = []
    for _ in range(config.runs):
        started = time.perf_counter()
        session.run(None, {feed.name: x})
        walls.append(time.perf_counter() - started)
    events = json.loads(Path(session.end_profiling()).read_text())
    runs = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    first_timed = sorted(e["ts"] for e in runs)[config.warmup] if len(runs) > config.warmup else 0
    per_op: dict[str, dict] = {}
    for event in events:
        if event.get("cat") != "Node" or not event.get("name", "").endswith("_kernel_time") or event["ts"] < first_timed:
            continue
        op = event.get("args", {}).get("op_name", "?")
        entry = per_op.setdefault(op, {"microseconds": 0.0, "nodes": set()})
        entry["microseconds"] += event["dur"]
        entry["nodes"].add(event["name"])
    total = sum(e["microseconds"] for e in per_op.values()) or 1.0
    operators = sorted(({"op": op, "ms_per_run": e["microseconds"] / 1e3 / config.runs,
                         "share": e["microseconds"] / total, "nodes": len(e["nodes"])}
                        for op, e in per_op.items()), key=lambda r: -r["share"])
    return {"model": str(path), "median_run_ms": 1e3 * statistics.median(walls), "operators": operators}


def markdown(reports: list, config: ProfileConfig) -> str:
    ops = sorted({o["op"] for r in reports for o in r["operators"]},
                 key=lambda op: -max((o["share"] for r in reports for o in r["operators"] if o["op"] == op)))
    header = "| operator (after ONNX Runtime's fusions) | " + " | ".join(
        f"{Path(r['model']).parent.name}/{Path(r['model']).name}" for r in reports) + " |"
    lines = [f"Input {config.batch}×{config.size}×{config.size}, {config.runs} profiled runs each; cells: ms per "
             "run (share of kernel time, nodes).", "", header, "|---|" + "---:|" * len(reports)]
    for op in ops:
        cells = []
        for r in reports:
            o = next((o for o in r["operators"] if o["op"] == op), None)
            cells.append(f"{o['ms_per_run']:.2f} ({100 * o['share']:.0f} %, {o['nodes']})" if o else "—")
        lines.append(f"| {op} | " + " | ".join(cells) + " |")
    lines.append("| **median wall time per run** | " + " | ".join(f"**{r['median_run_ms']:.1f} ms**"
                                                             for r in reports) + " |")
    return "\n".join(lines)


def plot(reports: list, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ops = sorted({o["op"] for r in reports for o in r["operators"]})
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(reports)
    for i, r in enumerate(reports):
        values = [next((o["ms_per_run"] for o in r["operators"] if o["op"] == op), 0.0) for op in ops]
        ax.bar([x + i * width for x in range(len(ops))], values, width,
               label=f"{Path(r['model']).parent.name}/{Path(r['model']).name} ({r['median_run_ms']:.1f} ms/run)")
    ax.set_xticks([x + width * (len(reports) - 1) / 2 for x in range(len(ops))], ops, rotation=30, ha="right",
                  fontsize=8)
    ax.set_ylabel("ms per run")
    ax.set_title("ONNX Runtime time per operator type")
    import report  # beside this script
    report.save_plot(fig, ax, path)


def main(argv=None) -> int:
    config = parse_args(argv)
    missing = [str(m) for m in config.models if not m.is_file()]
    if missing:
        print(f"error: no such ONNX file: {', '.join(missing)}", file=sys.stderr)
        return 2
    reports = [profile(path, config) for path in config.models]
    config.out.mkdir(parents=True, exist_ok=True)
    (config.out / "onnx_profile.json").write_text(json.dumps({"config": {k: str(v) for k, v in
                                                                         dataclasses.asdict(config).items()},
                                                              "reports": reports}, indent=2) + "\n")
    table = markdown(reports, config)
    (config.out / "onnx_profile.md").write_text(table + "\n")
    plot(reports, config.out / "onnx_profile.png")
    print(table)
    print(f"\nwritten {config.out}/onnx_profile.{{json,md,png}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
