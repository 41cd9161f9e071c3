"""Peak server memory against input size: what one serving_default request costs each backend.

    python benchmarks/server_memory.py --model-dir models/srgan --sizes 32,128,256,512
    python benchmarks/server_memory.py --model-dir models/srgan --versions 1,2 --backends savedmodel

Each (version, backend, size) runs in a fresh process that loads the version as the server does
(`serving.servable.Servable.load`, warm-up included), resets the kernel's peak-RSS mark (/proc/self/clear_refs)
and serves one 1×size×size request: the peak RSS above the loaded state is the request's cost. Export a
version with `--tile 0` to see the cost without the SavedModel's in-graph tiling. Linux only (reads /proc).
Writes server_memory.json, .md and .png to --out.
"""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import repo_path  # noqa: F401  (first: the packages importable, TensorFlow quiet)
from core.cli import parser

REPO = Path(__file__).resolve().parent.parent

_CHILD = """
import json, sys, numpy as np
from pathlib import Path
from serving.servable import Servable
def status(key):
    for line in open('/proc/self/status'):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
path, backend, size = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
servable = Servable.load('m', 1, path, backend)
image = np.random.default_rng(0).integers(0, 256, (1, size, size, 3), dtype=np.uint8)
with open('/proc/self/clear_refs', 'w') as f:
    f.write('5')  # the peak mark (VmHWM) starts again from the current RSS
loaded = status('VmRSS')
out = servable.runner.run('serving_default', {'images': image})['sr_images']
assert out.shape[0] == 1 and out.shape[1] == out.shape[2] > size
print(json.dumps({'loaded_bytes': loaded, 'peak_bytes': status('VmHWM')}))
"""


@dataclasses.dataclass(frozen=True)
class MemoryConfig:
    model_dir: Path = Path("models/srgan")
    versions: tuple = ()  # default: every version in --model-dir
    backends: tuple = ("savedmodel", "onnx")
    sizes: tuple = (32, 128, 256, 512)
    out: Path = Path("results/server_memory")


def parse_args(argv=None) -> MemoryConfig:
    d = MemoryConfig()
    p = parser("python benchmarks/server_memory.py", __doc__)
    p.add_argument("--model-dir", type=Path, default=d.model_dir, help="a model's folder of versions")
    p.add_argument("--versions", default="", help="comma-separated; default: all")
    p.add_argument("--backends", default=",".join(d.backends))
    p.add_argument("--sizes", default=",".join(map(str, d.sizes)), help="input sides in pixels")
    p.add_argument("--out", type=Path, default=d.out)
    a = p.parse_args(argv)
    split = lambda text, kind: tuple(kind(x) for x in text.split(",") if x)  # noqa: E731
    return MemoryConfig(a.model_dir, split(a.versions, int), split(a.backends, str), split(a.sizes, int), a.out)


def measure(version_dir: Path, backend: str, size: int) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", _CHILD, str(version_dir), backend, str(size)],
                            capture_output=True, text=True, env=env, cwd=REPO)
    if result.returncode:
        return {"error": result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "failed"}
    numbers = json.loads(result.stdout.strip().splitlines()[-1])
    return {**numbers, "request_bytes": numbers["peak_bytes"] - numbers["loaded_bytes"]}


def _tiling(version_dir: Path) -> str:
    from core.export_record import ExportRecord
    tiling = ExportRecord.load(version_dir).saved_model_tiling
    return f"tiles of {tiling['tile']} (windows {tiling['window']}²)" if tiling else "whole input"


def main(argv=None) -> int:
    from core.repository import versions
    config = parse_args(argv)
    chosen = config.versions or tuple(versions(config.model_dir))
    rows = []
    for version in chosen:
        version_dir = config.model_dir / str(version)
        for backend in config.backends:
            tiling = _tiling(version_dir) if backend == "savedmodel" else "tiles (in the server)"
            for size in config.sizes:
                row = {"version": version, "backend": backend, "graph": tiling, "size": size,
                       **measure(version_dir, backend, size)}
                rows.append(row)
                cost = f"{row['request_bytes'] / 2**20:8.0f} MB" if "error" not in row else row["error"]
                print(f"v{version} {backend:10s} {tiling:26s} {size:5d}²: {cost}", flush=True)
    config.out.mkdir(parents=True, exist_ok=True)
    (config.out / "server_memory.json").write_text(json.dumps({"model_dir": str(config.model_dir),
                                                               "rows": rows}, indent=2) + "\n")
    lines = ["| version | backend | SavedModel graph | input | peak above loaded |", "|---|---|---|---:|---:|"]
    lines += [f"| {r['version']} | {r['backend']} | {r['graph']} | {r['size']}² | "
              + (f"{r['request_bytes'] / 2**20:.0f} MB |" if "error" not in r else f"{r['error']} |") for r in rows]
    (config.out / "server_memory.md").write_text("\n".join(lines) + "\n")
    _plot(rows, config.out / "server_memory.png")
    print(f"written {config.out}/server_memory.{{json,md,png}}")
    return 0


def _plot(rows: list, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for key in sorted({(r["version"], r["backend"], r["graph"]) for r in rows}):
        points = [(r["size"], r["request_bytes"] / 2**20) for r in rows
                  if (r["version"], r["backend"], r["graph"]) == key and "error" not in r]
        if points:
            ax.plot(*zip(*points), marker="o", label=f"v{key[0]} {key[1]}: {key[2]}")
    ax.set_xlabel("input side (pixels), one image")
    ax.set_ylabel("peak RSS above loaded (MB)")
    ax.set_title("Server memory of one request")
    import report  # beside this script
    report.save_plot(fig, ax, path)


if __name__ == "__main__":
    sys.exit(main())
