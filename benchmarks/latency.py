"""Latency and throughput of every serving path of an exported model.

    python benchmarks/latency.py                                  # defaults: about 1.5 minutes on 2 CPU cores
    python benchmarks/latency.py --batches 1,4,16 --sizes 32,128 --max-batch-pixels 1000000 --seconds 5
    python benchmarks/latency.py --target tf-serving-host:8500    # the same sweep against any running server

Backends: the SavedModel in this process; ONNX Runtime on every provider this machine has (CPU here; CUDA and
TensorRT where a GPU is visible; `onnx-cpu`, `onnx-cuda` name one); TF Serving's gRPC and REST APIs (`grpc`,
`rest`, the same sweep) — the embedded server started here with batching off and on, or the servers at
--target (gRPC) and --rest-target. Per point: warm-up excluded, then requests for --seconds (at least
--min-requests): p50/p90/p95/p99/mean latency, images/s, and the GFLOP/s achieved beside this machine's
matrix-multiply rate measured in the same run. Writes latency.json (every figure and the environment),
latency.md and PNG plots to --out. The ONNX Runtime backends alone (`--backends onnx-cuda,onnx-cpu`) need only
onnxruntime, numpy and the model files: no TensorFlow, as on the GPU machines we borrow.
"""

import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

import repo_path  # noqa: F401  (first: the packages importable, TensorFlow quiet)

import measure
import report
from onnx_flops import model_flops
from core import contract
from core.cli import UserError, exit_on_user_error, find_version, parser
from core.repository import ONNX_UINT8
from serving.onnx_runtime import create_session, default_providers


@dataclasses.dataclass(frozen=True)
class LatencyConfig:
    model_dir: Path = Path("models/srgan")
    out: Path = Path("results/latency")
    batches: tuple[int, ...] = (1, 4, 8)
    sizes: tuple[int, ...] = (32, 128)
    max_batch_pixels: int = 16384  # skip in-process points with N·H·W above this (128×128 runs at batch 1)
    concurrency: tuple[int, ...] = (1, 4, 8)
    grpc_batches: tuple[int, ...] = (1, 4)
    seconds: float = 2.0
    min_requests: int = 3
    max_requests: int = 1000
    warmup: int = 2
    backends: tuple[str, ...] = ("savedmodel", "onnx", "grpc", "rest")
    target: str | None = None  # an already running server's gRPC port; default: start the embedded one
    rest_target: str | None = None  # an already running server's REST port
    server_backend: str = "onnx"  # the faster runtime on CPUs; "savedmodel" runs it as TF Serving does
    max_batch_size: int = 8
    batch_timeout_micros: int = 5000


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x)


def parse_args(argv=None) -> LatencyConfig:
    d = LatencyConfig()
    p = parser("python benchmarks/latency.py", __doc__)
    p.add_argument("--model-dir", type=Path, default=d.model_dir, help="model directory or a version directory")
    p.add_argument("--out", type=Path, default=d.out)
    p.add_argument("--batches", type=_ints, default=d.batches)
    p.add_argument("--sizes", type=_ints, default=d.sizes, help="input sides (32: the article's 32×32 → 128×128)")
    p.add_argument("--max-batch-pixels", type=int, default=d.max_batch_pixels)
    p.add_argument("--concurrency", type=_ints, default=d.concurrency, help="gRPC and REST clients")
    p.add_argument("--grpc-batches", type=_ints, default=d.grpc_batches,
                   help="batch sizes sent by one gRPC (and REST) client")
    p.add_argument("--seconds", type=float, default=d.seconds, help="measuring time per point")
    p.add_argument("--min-requests", type=int, default=d.min_requests)
    p.add_argument("--max-requests", type=int, default=d.max_requests)
    p.add_argument("--warmup", type=int, default=d.warmup, help="untimed requests first, per caller")
    p.add_argument("--backends", type=lambda s: tuple(s.split(",")), default=d.backends,
                   help="any of savedmodel, onnx (every provider, and model_int8.onnx where exported), "
                        "onnx-cpu, onnx-cuda, onnx-tensorrt, onnx-int8, grpc, rest")
    p.add_argument("--target", help="host:port of a running TF Serving's gRPC API (or serving.server) to measure")
    p.add_argument("--rest-target", help="host:port of a running TF Serving's REST API to measure")
    p.add_argument("--server-backend", choices=["savedmodel", "onnx"], default=d.server_backend,
                   help="what the embedded server runs")
    p.add_argument("--max-batch-size", type=int, default=d.max_batch_size, help="server-side batching")
    p.add_argument("--batch-timeout-micros", type=int, default=d.batch_timeout_micros)
    return LatencyConfig(**vars(p.parse_args(argv)))


def _images(batch: int, size: int) -> np.ndarray:
    return np.random.default_rng(batch * 1000 + size).integers(0, 256, (batch, size, size, 3), dtype=np.uint8)


def in_process_backends(config: LatencyConfig, version_dir: Path) -> tuple[dict, dict]:
    """name → uint8 NHWC in, uint8 out: the SavedModel, and ONNX Runtime on each provider this machine has;
    the INT8 copy where the export kept one (CPU); and the ONNX Runtime CPU settings chosen by timing them here
    (as the server chooses them at load)."""
    runs, tuning, cpu_settings = {}, {}, None
    if "savedmodel" in config.backends:
        from serving.servable import SavedModelRunner  # TensorFlow: only for this backend
        runner = SavedModelRunner(version_dir)
        runs["savedmodel"] = lambda images: contract.upscale_uint8(runner, images)
    for provider in default_providers():
        name = provider if isinstance(provider, str) else provider[0]
        label = "onnx-" + name.removesuffix("ExecutionProvider").lower()
        if "onnx" in config.backends or label in config.backends:
            settings = None
            if name == "CPUExecutionProvider":
                from serving.cpu_tuning import choose, sample_feed
                settings, timings = choose(version_dir / ONNX_UINT8, sample_feed(version_dir / ONNX_UINT8))
                tuning = {"chosen": dataclasses.asdict(settings), "timed": timings}
                cpu_settings = settings  # the INT8 copy runs with the same settings
            session = create_session(version_dir / ONNX_UINT8, [provider] if name == "CPUExecutionProvider"
                                     else [provider, "CPUExecutionProvider"], cpu_settings=settings)
            runs[label] = lambda images, s=session: s.run(None, {contract.UINT8_INPUT: images})[0]
    int8_model = version_dir / "model_int8.onnx"  # written by export.to_onnx --int8 when its quality holds
    if ("onnx" in config.backends and int8_model.exists()) or "onnx-int8" in config.backends:
        if not int8_model.exists():
            raise UserError(f"{int8_model} does not exist; export with python -m export.to_onnx --int8 (not written "
                            "when its quality cost was above the budget: see export.json).")
        session = create_session(int8_model, ["CPUExecutionProvider"], cpu_settings=cpu_settings)
        runs["onnx-int8"] = lambda images, s=session: s.run(None, {contract.UINT8_INPUT: images})[0]
    return runs, tuning


def _point(backend, size, batch, clients=1, batching=None, stats=None) -> dict:
    return {"backend": backend, "size": size, "batch": batch, "clients": clients, "batching": batching, **stats}


def measure_in_process(config: LatencyConfig, backends: dict, bar) -> list[dict]:
    points = []
    for name, run in backends.items():
        for size in config.sizes:
            for batch in config.batches:
                if batch * size * size > config.max_batch_pixels:
                    continue
                bar.set_description(f"{name} {batch}×{size}×{size}")
                images = _images(batch, size)
                stats = measure.run_sequential(lambda: run(images), batch, config.warmup, config.seconds,
                                               config.min_requests, config.max_requests)
                points.append(_point(name, size, batch, stats=stats))
                bar.update()
    return points


PROTOCOLS = ("grpc", "rest")


def _client(protocol: str, target: str):
    if protocol == "rest":
        from serving.rest_client import SrganRestClient
        return SrganRestClient(target)
    from serving.client import SrganClient
    return SrganClient(target)


def measure_server(config: LatencyConfig, protocol: str, target: str, batching, bar) -> list[dict]:
    """One protocol's sweep against one server: batch sizes with one client, then concurrent clients."""
    label = protocol if batching is not None else f"{protocol} {target}"
    size = min(config.sizes)
    points = []

    def caller(batch):
        def make():
            client = _client(protocol, target)
            images = _images(batch, size)
            return lambda: client.upscale(images)
        return make

    for batch in (config.grpc_batches if not batching else ()):
        bar.set_description(f"{label} {batch}×{size}×{size}")
        stats = measure.run_concurrent(caller(batch), 1, batch, config.warmup, config.seconds, config.min_requests)
        points.append(_point(label, size, batch, 1, batching, stats))
        bar.update()
    for clients in config.concurrency:
        if clients == 1 and not batching and 1 in config.grpc_batches:
            continue  # already measured above
        bar.set_description(f"{label} {clients} clients, batching {'on' if batching else 'off'}")
        stats = measure.run_concurrent(caller(1), clients, 1, config.warmup, config.seconds, config.min_requests)
        points.append(_point(label, size, 1, clients, batching, stats))
        bar.update()
    return points


def server_series(config: LatencyConfig, bar) -> list[dict]:
    """Both protocols against the servers at --target/--rest-target, or against the embedded server started here
    twice (batching off, then on), serving gRPC and REST from the same process."""
    protocols = [p for p in PROTOCOLS if p in config.backends]
    if config.target is not None or config.rest_target is not None:
        targets = {"grpc": config.target, "rest": config.rest_target}
        return [point for p in protocols if targets[p] for point in measure_server(config, p, targets[p], None, bar)]
    import tempfile

    from serving.process import EmbeddedServer, free_port
    # The version measured in process, served alone (--model-dir may name the model's folder or one version).
    version_dir = find_version(config.model_dir).resolve()
    served = Path(tempfile.mkdtemp(prefix="latency-")) / "models.config"
    served.write_text(f'model_config_list {{ config {{ name: "srgan" base_path: "{version_dir.parent}" '
                      f'model_platform: "tensorflow" model_version_policy {{ specific {{ versions: '
                      f'{int(version_dir.name)} }} }} }} }}\n')
    points = []
    for batching in (False, True):
        rest_port = free_port()
        flags = ["--backend", config.server_backend, "--file_system_poll_wait_seconds", "0",
                 "--rest_api_port", str(rest_port), "--model_config_file", str(served)]
        if batching:
            flags += ["--enable_batching", "--max_batch_size", str(config.max_batch_size),
                      "--batch_timeout_micros", str(config.batch_timeout_micros)]
        with EmbeddedServer(*flags) as server:
            targets = {"grpc": server.target, "rest": f"127.0.0.1:{rest_port}"}
            with _client("grpc", server.target) as client:
                client.wait_until_available()
            for protocol in protocols:
                points += measure_server(config, protocol, targets[protocol], batching, bar)
    return points


def _has(module: str) -> bool:
    import importlib.util
    return importlib.util.find_spec(module) is not None


class _Quiet:
    """A stand-in for tqdm where it is not installed (the borrowed GPU machines)."""

    def __init__(self, total):
        self.total = total

    def __enter__(self):
        return self

    def __exit__(self, *_):
        return False

    def set_description(self, text):
        print(text, flush=True)

    def update(self, n=1):
        pass


def _progress(total: int):
    if _has("tqdm"):
        from tqdm import tqdm
        return tqdm(total=total, unit="point", dynamic_ncols=True)
    return _Quiet(total)


def count_points(config: LatencyConfig, in_process: int) -> int:
    per_backend = sum(1 for s in config.sizes for b in config.batches if b * s * s <= config.max_batch_pixels)
    external = config.target is not None or config.rest_target is not None
    targets = {"grpc": config.target, "rest": config.rest_target}
    protocols = [p for p in PROTOCOLS if p in config.backends and (not external or targets[p])]
    series = 1 if external else 2
    per_protocol = len(config.grpc_batches) + series * len(config.concurrency) - (1 in config.concurrency
                                                                                  and 1 in config.grpc_batches)
    return in_process * per_backend + len(protocols) * per_protocol


@exit_on_user_error
def main(argv=None) -> int:
    config = parse_args(argv)
    version_dir = find_version(config.model_dir)
    started = time.perf_counter()
    print(f"measuring the matrix-multiply rate and loading {version_dir} …", flush=True)
    peak = measure.matmul_gflops()
    flops = {size: model_flops(version_dir / ONNX_UINT8, size, size) for size in config.sizes}
    backends, cpu_tuning = in_process_backends(config, version_dir)
    import gc
    gc.freeze()  # what is loaded now stays: full collections then skip it instead of stalling a request
    with _progress(count_points(config, len(backends))) as bar:
        points = measure_in_process(config, backends, bar)
        if any(p in config.backends for p in PROTOCOLS):
            points += server_series(config, bar)
    for p in points:
        p["gflops_per_second"] = p["images_per_second"] * flops[p["size"]] / 1e9
        p["fraction_of_matmul"] = p["gflops_per_second"] / peak
    results = {"environment": {**measure.environment(), "onnx_cpu_settings": cpu_tuning,
                               "onnx_providers": [p if isinstance(p, str) else p[0] for p in default_providers()]},
               "model": str(version_dir.resolve()),
               "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(config).items()},
               "matmul_gflops_per_second": peak, "flops_per_image": {str(k): v for k, v in flops.items()},
               "points": points, "seconds": time.perf_counter() - started}
    results["findings"] = report.findings(results, config.server_backend)
    config.out.mkdir(parents=True, exist_ok=True)
    (config.out / "latency.json").write_text(json.dumps(results, indent=2) + "\n")
    table = report.markdown(results)
    (config.out / "latency.md").write_text(table + "\n")
    plots = report.plots(results, config.out) if _has("matplotlib") else []
    print("\n" + table)
    print(f"\nwritten {config.out / 'latency.json'}, {config.out / 'latency.md'}, "
          + ", ".join(str(p) for p in plots) + f" in {results['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
