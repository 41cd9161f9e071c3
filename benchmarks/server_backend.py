"""The server's ONNX Runtime backend under concurrent requests, in this process: no network, no TensorFlow.

    python benchmarks/server_backend.py --model-dir models/srgan --out results/server_backend

What a gRPC or REST request reaches once decoded: `serving.servable.OnnxRunner` (the server's runner, tiling
and deadlines included), directly or through server-side batching (`serving.batching.Batcher`, the server's
--max_batch_size and --batch_timeout_micros), called by 1 and 8 concurrent threads. Where a GPU runs the model,
each of its modes: plain `run`, I/O binding, and I/O binding with a CUDA graph per input shape (the server's
default). On a CPU the modes are one (binding is for device memory) and batching off against on is what it
measures. Per point: p50/p99 latency and images/s; writes server_backend.json and server_backend.md.

Made for the GPU machines we borrow too (shared/GPU-PROOF.md): besides onnxruntime-gpu and numpy it needs only
the pure wheels of grpcio, pillow and prometheus-client, carried like onnxruntime-gpu's.
"""

import dataclasses
import json
import sys
import time
import types
from pathlib import Path

import numpy as np

import repo_path  # noqa: F401  (first: the packages importable, TensorFlow quiet)

import measure
from core import contract
from core.cli import exit_on_user_error, find_version, parser

MODES = ("run", "iobinding", "graphs")


@dataclasses.dataclass(frozen=True)
class ServerBackendConfig:
    model_dir: Path = Path("models/srgan")
    out: Path = Path("results/server_backend")
    modes: tuple[str, ...] = MODES  # GPU modes; one row where no GPU runs the model
    clients: tuple[int, ...] = (1, 8)
    sizes: tuple[int, ...] = (32,)  # sides of the requests, one image each
    seconds: float = 3.0
    warmup: int = 3  # per client: the first calls capture the CUDA graphs
    min_requests: int = 5
    max_batch_size: int = 8
    batch_timeout_micros: int = 5000


def parse_args(argv=None) -> ServerBackendConfig:
    d = ServerBackendConfig()
    p = parser("python benchmarks/server_backend.py", __doc__)
    p.add_argument("--model-dir", type=Path, default=d.model_dir, help="model directory or a version directory")
    p.add_argument("--out", type=Path, default=d.out)
    p.add_argument("--modes", type=lambda s: tuple(s.split(",")), default=d.modes, help=f"any of {', '.join(MODES)}")
    p.add_argument("--clients", type=lambda s: tuple(int(x) for x in s.split(",")), default=d.clients)
    p.add_argument("--sizes", type=lambda s: tuple(int(x) for x in s.split(",")), default=d.sizes)
    p.add_argument("--seconds", type=float, default=d.seconds, help="measuring time per point")
    p.add_argument("--warmup", type=int, default=d.warmup)
    p.add_argument("--min-requests", type=int, default=d.min_requests)
    p.add_argument("--max-batch-size", type=int, default=d.max_batch_size)
    p.add_argument("--batch-timeout-micros", type=int, default=d.batch_timeout_micros)
    config = ServerBackendConfig(**vars(p.parse_args(argv)))
    if unknown := set(config.modes) - set(MODES):
        p.error(f"unknown mode(s) {', '.join(sorted(unknown))}: choose from {', '.join(MODES)}")
    return config


def measure_runner(config: ServerBackendConfig, runner, mode: str) -> list[dict]:
    """Every (size, batching, clients) point of one loaded runner."""
    from serving.batching import Batcher
    servable = types.SimpleNamespace(name="bench", runner=runner)  # what Batcher reads of a Servable
    batcher = Batcher(config.max_batch_size, config.batch_timeout_micros / 1e6)
    points = []
    try:
        for size in config.sizes:
            images = np.random.default_rng(size).integers(0, 256, (1, size, size, 3), dtype=np.uint8)
            inputs = {contract.UINT8_INPUT: images}
            for batching in (False, True):
                def call():
                    if batching:
                        return batcher.run(servable, contract.SERVING_DEFAULT, inputs)
                    return runner.run(contract.SERVING_DEFAULT, inputs)
                for clients in config.clients:
                    stats = measure.run_concurrent(lambda: call, clients, 1, config.warmup, config.seconds,
                                                   config.min_requests)
                    point = {"mode": mode, "provider": runner.provider, "size": size, "batching": batching,
                             "clients": clients, **stats}
                    points.append(point)
                    print(f"{mode:9s} {size:4d}²  batching {'on ' if batching else 'off'}  {clients} client(s)  "
                          f"p50 {stats['p50_ms']:8.2f} ms  p99 {stats['p99_ms']:8.2f} ms  "
                          f"{stats['images_per_second']:8.1f} img/s", flush=True)
    finally:
        batcher.close()
    return points


def markdown(results: dict) -> str:
    env = results["environment"]
    lines = [f"Machine: {env.get('cpu')} ({env.get('cores')} cores); GPU: {env.get('gpu') or 'none'}; "
             f"ONNX Runtime {env.get('onnxruntime')}. Model {results['model']}.", "",
             "| mode | provider | size | batching | clients | p50 ms | p99 ms | img/s |",
             "|---|---|---:|---|---:|---:|---:|---:|"]
    for p in results["points"]:
        lines.append(f"| {p['mode']} | {p['provider'].removesuffix('ExecutionProvider')} | {p['size']}² | "
                     f"{'on' if p['batching'] else 'off'} | {p['clients']} | {p['p50_ms']:.2f} | {p['p99_ms']:.2f} | "
                     f"{p['images_per_second']:.1f} |")
    return "\n".join(lines)


@exit_on_user_error
def run(config: ServerBackendConfig) -> dict:
    import onnxruntime as ort

    from serving.servable import OnnxRunner
    version_dir = find_version(config.model_dir)
    if hasattr(ort, "preload_dlls"):
        ort.preload_dlls()  # CUDA and cuDNN from the nvidia-* pip packages, where they are installed
    started = time.perf_counter()
    results = {"environment": measure.environment(), "model": str(version_dir), "config": {
        k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()
        if k not in ("model_dir", "out")}, "points": []}
    measured = set()
    for mode in config.modes:
        runner = OnnxRunner(version_dir, gpu_mode=mode)
        if runner.gpu_mode in measured:  # on a CPU, or graphs refused: the same runner again
            print(f"{mode}: runs as {runner.gpu_mode} on {runner.provider}, measured above")
            continue
        measured.add(runner.gpu_mode)
        results["points"] += measure_runner(config, runner, runner.gpu_mode)
    results["seconds"] = time.perf_counter() - started
    config.out.mkdir(parents=True, exist_ok=True)
    (config.out / "server_backend.json").write_text(json.dumps(results, indent=2) + "\n")
    table = markdown(results)
    (config.out / "server_backend.md").write_text(table + "\n")
    print(f"\n{table}\n\nwritten {config.out}/server_backend.json and .md in {results['seconds']:.0f} s")
    return results


def main(argv=None) -> int:
    run(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
