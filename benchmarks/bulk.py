"""Bulk upscaling: the Beam pipeline (serving.bulk) against serving.upscale on the same folder, backend and
machine, in one run.

    python benchmarks/bulk.py --model-dir models/srgan --out benchmarks/results/bulk

The folder is the held-out photographs degraded ×4 as the quality benchmark degrades them, each --copies times
under its own name (a bulk job is many files: the worker processes' start is paid once) — or --images DIR.
Rows: serving.upscale (one process, file after file), serving.bulk on Beam's in-process runner, and serving.bulk
with the direct runner's multi-process mode (one worker process per core). Each row: images/s, input
megapixels/s and its time against serving.upscale's; the difference between the first two is the cost of Beam
itself. Writes bulk.json and bulk.md.
"""

import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import repo_path  # noqa: F401  (first: the packages importable, TensorFlow quiet)
from core.cli import exit_on_user_error, find_version, parser


@dataclasses.dataclass(frozen=True)
class BulkBenchConfig:
    model_dir: Path = Path("models/srgan")
    images: Path | None = None  # default: the held-out photographs, degraded ×4
    backend: str = "onnx"
    copies: int = 8  # of each held-out photograph
    out: Path = Path("benchmarks/results/bulk")


def parse_args(argv=None) -> BulkBenchConfig:
    d = BulkBenchConfig()
    p = parser("python benchmarks/bulk.py", __doc__)
    p.add_argument("--model-dir", type=Path, default=d.model_dir)
    p.add_argument("--images", type=Path, help="a folder of images to upscale")
    p.add_argument("--backend", choices=["onnx", "savedmodel"], default=d.backend)
    p.add_argument("--copies", type=int, default=d.copies, help="copies of each held-out photograph (not --images)")
    p.add_argument("--out", type=Path, default=d.out)
    return BulkBenchConfig(**vars(p.parse_args(argv)))


def _held_out_inputs(folder: Path, copies: int) -> list[Path]:
    from PIL import Image

    from training.evaluation import held_out_pairs
    paths = []
    for pair in held_out_pairs():
        for copy in range(copies):
            paths.append(folder / f"{pair.name}-{copy}.png")
            Image.fromarray(pair.lr).save(paths[-1])
    return paths


@exit_on_user_error
def run(config: BulkBenchConfig) -> dict:
    from measure import environment

    from serving.bulk import BulkConfig
    from serving.bulk import run as bulk_run
    from serving.upscale import UpscaleConfig
    from serving.upscale import run as upscale_run
    version_dir = find_version(config.model_dir)
    work = Path(tempfile.mkdtemp(prefix="bulk-bench-"))
    try:
        if config.images:
            inputs = sorted(p for p in config.images.iterdir() if p.is_file())
        else:
            (work / "in").mkdir()
            inputs = _held_out_inputs(work / "in", config.copies)
        from PIL import Image
        megapixels = sum(Image.open(p).size[0] * Image.open(p).size[1] for p in inputs) / 1e6
        rows = []
        started = time.monotonic()
        upscale_run(UpscaleConfig(tuple(inputs), work / "upscale", config.backend, version_dir))
        rows.append(("serving.upscale (one process)", time.monotonic() - started))
        patterns = tuple(str(p) for p in inputs)
        workers = os.cpu_count() or 1
        for label, args in (("serving.bulk, Beam in-process runner", ()),
                            (f"serving.bulk, direct runner multi-process ({workers} workers)",
                             ("--direct_num_workers", str(workers), "--direct_running_mode", "multi_processing"))):
            out = work / label.split(",")[1].strip().split()[0]
            started = time.monotonic()
            result = bulk_run(BulkConfig(patterns, str(out), version_dir, config.backend, pipeline_args=args))
            assert result["counts"]["ok"] == len(inputs), result["counts"]
            rows.append((label, time.monotonic() - started))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    baseline = rows[0][1]
    results = {"environment": environment(), "version": str(version_dir.resolve()), "backend": config.backend,
               "images": len(inputs), "input_megapixels": round(megapixels, 3),
               "rows": [{"method": m, "seconds": round(s, 2), "images_per_s": round(len(inputs) / s, 3),
                         "megapixels_per_s": round(megapixels / s, 4), "time_vs_upscale": round(s / baseline, 3)}
                        for m, s in rows]}
    config.out.mkdir(parents=True, exist_ok=True)
    (config.out / "bulk.json").write_text(json.dumps(results, indent=2) + "\n")
    (config.out / "bulk.md").write_text(markdown(results) + "\n")
    return results


def markdown(results: dict) -> str:
    lines = [f"{results['images']} images, {results['input_megapixels']} input megapixels, backend "
             f"{results['backend']}; {results['environment'].get('cpu', '')}", "",
             "| method | seconds | images/s | input MP/s | time vs serving.upscale |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['method']} | {r['seconds']:.1f} | {r['images_per_s']:.2f} | {r['megapixels_per_s']:.3f} | "
              f"{r['time_vs_upscale']:.2f}× |" for r in results["rows"]]
    return "\n".join(lines)


def main(argv=None) -> int:
    config = parse_args(argv)
    print(markdown(run(config)))
    print(f"\nwritten {config.out / 'bulk.json'}, {config.out / 'bulk.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
