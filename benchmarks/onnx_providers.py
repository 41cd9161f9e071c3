"""ONNX Runtime on its providers, with nothing but onnxruntime, numpy and the model files (no TensorFlow).

    python benchmarks/onnx_providers.py --model-dir models/srgan/1 --out results/onnx_providers

Made for the GPU machines we borrow (CUDA and ONNX Runtime, no TensorFlow; see shared/GPU-PROOF.md), and
runs anywhere. It measures:
- which provider really runs (`session.get_providers()[0]`);
- parity of the GPU against the CPU provider: model.onnx in uint8 (largest difference, share identical),
  model_float.onnx in float (max/mean absolute error, TF32 off and on) and model_fp16.onnx in uint8;
- latency (warm-up excluded: p50/p90/p99, images/s) at batch 1, 8, 32 of 32×32 and batch 1 of 128×128 and
  512×512, for: plain `run` (host arrays in and out), I/O binding with device-resident buffers (the copies
  timed apart), CUDA graphs, cuDNN's algorithm search exhaustive vs heuristic, NHWC preference on and off,
  TF32 on and off, and the float16 model.
Writes onnx_providers.json and onnx_providers.md to --out (and a PNG when matplotlib is importable).
"""

import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

import repo_path  # noqa: F401  (first: the packages importable, TensorFlow quiet)

import measure
from core.cli import UserError, exit_on_user_error, find_version, parser
from core.repository import ONNX_UINT8
from serving.onnx_runtime import BoundRunner, cuda_options, gpu_visible

SHAPES = ((1, 32), (8, 32), (32, 32), (1, 128), (1, 512))  # (batch, input side)


@dataclasses.dataclass(frozen=True)
class ProvidersConfig:
    version_dir: Path
    out: Path = Path("results/onnx_providers")
    seconds: float = 1.5
    warmup: int = 3
    cpu_max_pixels: int = 8 * 32 * 32  # the CPU provider is measured on the small shapes only


def parse_args(argv=None) -> ProvidersConfig:
    p = parser("python benchmarks/onnx_providers.py", __doc__)
    p.add_argument("--model-dir", dest="version_dir", type=Path, default=Path("models/srgan"),
                   help="a model folder (its newest version) or one version folder")
    p.add_argument("--out", type=Path, default=ProvidersConfig.out)
    p.add_argument("--seconds", type=float, default=ProvidersConfig.seconds, help="measuring time per point")
    p.add_argument("--warmup", type=int, default=ProvidersConfig.warmup)
    return ProvidersConfig(**vars(p.parse_args(argv)))


def _session(path: Path, provider: str, **cuda) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    providers = ["CPUExecutionProvider"]
    if provider == "cuda":
        providers = [("CUDAExecutionProvider", {**cuda_options(), **cuda}), "CPUExecutionProvider"]
    return ort.InferenceSession(str(path), sess_options=options, providers=providers)


def _images(batch: int, side: int, dtype=np.uint8) -> np.ndarray:
    rng = np.random.default_rng(batch * 1000 + side)
    # Smooth content (a photograph's statistics) plus noise, so the parity covers both.
    y, x = np.mgrid[0:side, 0:side] / side
    base = 127.5 + 100 * np.sin(6 * x[..., None] + 4 * y[..., None] + np.arange(3))
    images = np.clip(base[None] + rng.normal(0, 20, (batch, side, side, 3)), 0, 255).round()
    return images.astype(np.uint8) if dtype == np.uint8 else (images / 127.5 - 1).astype(np.float32)


def _run(session, images):
    return session.run(None, {session.get_inputs()[0].name: images})[0]


# -- parity -------------------------------------------------------------------------------------------
def _uint8_parity(a: np.ndarray, b: np.ndarray) -> dict:
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return {"max_uint8_diff": int(diff.max()), "identical": float((diff == 0).mean())}


def _float_parity(a: np.ndarray, b: np.ndarray) -> dict:
    diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
    return {"max_abs": float(diff.max()), "mean_abs": float(diff.mean())}


def parity(version_dir: Path) -> list[dict]:
    rows = []
    shapes = ((4, 32), (1, 128))
    cpu = _session(version_dir / ONNX_UINT8, "cpu")
    float_cpu = _session(version_dir / "model_float.onnx", "cpu") if (version_dir / "model_float.onnx").exists() else None
    for tf32 in ("0", "1"):
        gpu = _session(version_dir / ONNX_UINT8, "cuda", use_tf32=tf32)
        for batch, side in shapes:
            images = _images(batch, side)
            rows.append({"model": "model.onnx", "tf32": tf32 == "1", "shape": [batch, side, side, 3],
                         "provider": gpu.get_providers()[0], **_uint8_parity(_run(gpu, images), _run(cpu, images))})
        if float_cpu is not None:
            float_gpu = _session(version_dir / "model_float.onnx", "cuda", use_tf32=tf32)
            for batch, side in shapes:
                images = _images(batch, side, np.float32)
                rows.append({"model": "model_float.onnx", "tf32": tf32 == "1", "shape": [batch, side, side, 3],
                             "provider": float_gpu.get_providers()[0],
                             **_float_parity(_run(float_gpu, images), _run(float_cpu, images))})
    if (version_dir / "model_fp16.onnx").exists():
        fp16 = _session(version_dir / "model_fp16.onnx", "cuda")
        for batch, side in shapes:
            images = _images(batch, side)
            rows.append({"model": "model_fp16.onnx", "tf32": None, "shape": [batch, side, side, 3],
                         "provider": fp16.get_providers()[0], **_uint8_parity(_run(fp16, images), _run(cpu, images))})
    return rows


# -- latency ------------------------------------------------------------------------------------------
VARIANTS = {
    # name: (model file, provider, CUDA options replacing the defaults, how it is called)
    "cuda run": ("model.onnx", "cuda", {}, "run"),
    "cuda iobinding": ("model.onnx", "cuda", {}, "iobinding"),
    "cuda iobinding + copies": ("model.onnx", "cuda", {}, "round_trip"),
    "cuda graph": ("model.onnx", "cuda", {"enable_cuda_graph": "1"}, "iobinding"),
    "cuda heuristic search": ("model.onnx", "cuda", {"cudnn_conv_algo_search": "HEURISTIC"}, "iobinding"),
    "cuda nhwc off": ("model.onnx", "cuda", {"prefer_nhwc": "0"}, "iobinding"),
    "cuda tf32 off": ("model.onnx", "cuda", {"use_tf32": "0"}, "iobinding"),
    "cuda fp16": ("model_fp16.onnx", "cuda", {}, "iobinding"),
    "cuda fp16 graph": ("model_fp16.onnx", "cuda", {"enable_cuda_graph": "1"}, "iobinding"),
    "cpu run": ("model.onnx", "cpu", {}, "run"),
}


def measure_variant(config: ProvidersConfig, name: str, flops: dict) -> list[dict]:
    model, provider, options, call = VARIANTS[name]
    path = config.version_dir / model
    if not path.exists():
        return []
    points = []
    session = None
    for batch, side in SHAPES:
        if provider == "cpu" and batch * side * side > config.cpu_max_pixels:
            continue
        # A captured CUDA graph replays one shape: one session per shape.
        if session is None or options.get("enable_cuda_graph") == "1":
            session = _session(path, provider, **options)
        ran_on = session.get_providers()[0]
        images = _images(batch, side)
        point = {"variant": name, "batch": batch, "side": side, "provider": ran_on}
        try:
            if call == "run":
                fn = lambda: _run(session, images)  # noqa: E731
            else:
                bound = BoundRunner(session, images.shape)
                bound(images)  # the first runs capture the CUDA graph where it is on
                bound(images)
                fn = bound.compute if call == "iobinding" else (lambda: bound(images))  # noqa: E731
            stats = measure.run_sequential(fn, batch, config.warmup, config.seconds, 5, 100_000)
        except Exception as error:  # noqa: BLE001 - a variant this build cannot run is reported, not fatal
            points.append({**point, "error": str(error).splitlines()[0][:300]})
            continue
        stats["tflops_per_second"] = stats["images_per_second"] * flops[side] / 1e12
        points.append({**point, **stats})
        print(f"{name:26s} {batch:3d}×{side}²  p50 {stats['p50_ms']:8.3f} ms  {stats['images_per_second']:9.1f} img/s"
              f"  {stats['tflops_per_second']:6.2f} TFLOP/s", flush=True)
    return points


def _flops(version_dir: Path) -> dict:
    # 2 × multiply-adds per image, from the ONNX graph when `onnx` is importable, else the article's figure.
    try:
        from onnx_flops import model_flops
        return {side: model_flops(version_dir / ONNX_UINT8, side, side) for _, side in SHAPES}
    except ImportError:
        return {side: 4_541_000_000 * side * side // 1024 for _, side in SHAPES}


def markdown(results: dict) -> str:
    env = results["environment"]
    lines = [f"GPU: {env['gpu']}; CPU: {env['cpu']} ({env['cores']} cores); ONNX Runtime {env['onnxruntime']}, "
             f"Python {env['python']}.", "",
             "| model | TF32 | shape | provider | max uint8 diff | identical | max abs | mean abs |",
             "|---|---|---|---|---:|---:|---:|---:|"]
    for r in results["parity"]:
        lines.append(f"| {r['model']} | {r['tf32'] if r['tf32'] is not None else '—'} | {'×'.join(map(str, r['shape']))} "
                     f"| {r['provider']} | {r.get('max_uint8_diff', '—')} | "
                     + (f"{r['identical'] * 100:.2f} %" if "identical" in r else "—")
                     + f" | {r.get('max_abs', '—') if 'max_abs' not in r else format(r['max_abs'], '.2e')} | "
                     + (format(r["mean_abs"], ".2e") if "mean_abs" in r else "—") + " |")
    lines += ["", "| variant | batch × input | p50 ms | p90 ms | p99 ms | img/s | TFLOP/s |",
              "|---|---|---:|---:|---:|---:|---:|"]
    for p in results["points"]:
        if "error" in p:
            lines.append(f"| {p['variant']} | {p['batch']}×{p['side']}² | failed: {p['error'][:80]} | | | | |")
        else:
            lines.append(f"| {p['variant']} | {p['batch']}×{p['side']}² | {p['p50_ms']:.3f} | {p['p90_ms']:.3f} | "
                         f"{p['p99_ms']:.3f} | {p['images_per_second']:.1f} | {p['tflops_per_second']:.2f} |")
    return "\n".join(lines)


def plot(results: dict, out: Path) -> Path | None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(9, 5))
    variants = [v for v in VARIANTS if any(p["variant"] == v and "error" not in p for p in results["points"])]
    labels = [f"{b}×{s}²" for b, s in SHAPES]
    width = 0.8 / max(len(variants), 1)
    for i, variant in enumerate(variants):
        rates = {f"{p['batch']}×{p['side']}²": p["images_per_second"] for p in results["points"]
                 if p["variant"] == variant and "error" not in p}
        ax.bar([j + i * width for j in range(len(labels))], [rates.get(label, 0) for label in labels], width,
               label=variant)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(labels))], labels)
    ax.set_yscale("log")
    ax.set_ylabel("images/s (log)")
    ax.set_title(f"ONNX Runtime {results['environment']['onnxruntime']} on {results['environment']['gpu']}")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path = out / "onnx_providers.png"
    fig.savefig(path, dpi=110)
    return path


@exit_on_user_error
def main(argv=None) -> int:
    config = parse_args(argv)
    config = dataclasses.replace(config, version_dir=find_version(config.version_dir))
    if not (config.version_dir / ONNX_UINT8).is_file():
        raise UserError(f"{config.version_dir} has no model.onnx; pass an exported version folder.")
    if hasattr(ort, "preload_dlls"):
        ort.preload_dlls()  # CUDA and cuDNN from the nvidia-* pip packages, where they are installed
    started = time.perf_counter()
    results = {"environment": {**measure.environment(), "available_providers": ort.get_available_providers()},
               "model": str(config.version_dir)}
    flops = _flops(config.version_dir)
    results["flops_per_image"] = {str(k): v for k, v in flops.items()}
    gpu = "CUDAExecutionProvider" in ort.get_available_providers() and gpu_visible()
    results["parity"] = parity(config.version_dir) if gpu else []
    results["points"] = []
    for name in VARIANTS:
        if VARIANTS[name][1] == "cuda" and not gpu:
            continue
        results["points"] += measure_variant(config, name, flops)
    results["seconds"] = time.perf_counter() - started
    config.out.mkdir(parents=True, exist_ok=True)
    (config.out / "onnx_providers.json").write_text(json.dumps(results, indent=2) + "\n")
    table = markdown(results)
    (config.out / "onnx_providers.md").write_text(table + "\n")
    picture = plot(results, config.out)
    print("\n" + table + f"\n\nwritten {config.out}/onnx_providers.json, .md" + (f", {picture}" if picture else "")
          + f" in {results['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
