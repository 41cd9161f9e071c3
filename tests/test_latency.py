import json
import sys

from PIL import Image

from tests.helpers import REPO

FIELDS = {"backend", "size", "batch", "clients", "batching", "requests", "images", "wall_seconds", "p50_ms",
          "p90_ms", "p95_ms", "p99_ms", "mean_ms", "min_ms", "max_ms", "images_per_second", "gflops_per_second",
          "fraction_of_matmul"}


def test_latency_benchmark_with_a_tiny_sweep(exported, tmp_path):
    import subprocess
    out = tmp_path / "latency"
    result = subprocess.run(
        [sys.executable, "benchmarks/latency.py", "--model-dir", str(exported[0].parent), "--out", str(out),
         "--batches", "1,8", "--sizes", "8,16", "--concurrency", "1,8", "--grpc-batches", "1,2", "--seconds", "0.2",
         "--min-requests", "3", "--warmup", "1"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads((out / "latency.json").read_text())
    points = data["points"]
    assert {p["backend"] for p in points} == {"savedmodel", "onnx-cpu", "grpc", "rest"}
    for protocol in ("grpc", "rest"):  # the same sweep over both APIs of one server
        assert len([p for p in points if p["backend"] == protocol]) == 2 + 2 * 2 - 1
    for p in points:
        assert FIELDS <= set(p), FIELDS - set(p)
        assert p["min_ms"] <= p["p50_ms"] <= p["p90_ms"] <= p["p95_ms"] <= p["p99_ms"] <= p["max_ms"]
        assert p["requests"] >= 3 and p["images_per_second"] > 0 and p["gflops_per_second"] > 0
    assert {"cpu", "cores", "gpu", "tensorflow", "onnxruntime"} <= set(data["environment"])
    assert data["matmul_gflops_per_second"] > 0 and set(data["flops_per_image"]) == {"8", "16"}
    tuning = data["environment"]["onnx_cpu_settings"]  # chosen by timing, recorded
    assert min(t["median_ms"] for t in tuning["timed"]) == next(
        t["median_ms"] for t in tuning["timed"] if {k: t[k] for k in tuning["chosen"]} == tuning["chosen"])
    assert {t["spinning"] for t in tuning["timed"]} == {True, False} and len(tuning["timed"]) >= 4
    assert set(data["findings"]) == {"onnx_fraction_of_matmul_at_batch_4_plus",
                                     "grpc_p50_over_in_process_p50_batch_1", "rest_p50_over_grpc_p50_batch_1",
                                     "batched_grpc_throughput_over_best_in_process_batch_8"}
    assert "| grpc | 8×8 | 1 | 8 | on |" in (out / "latency.md").read_text()
    assert "| rest | 8×8 | 1 | 8 | on |" in (out / "latency.md").read_text()
    assert "| grpc | 8×8 | 1 | 8 | on |" in result.stdout
    for name in ("latency_vs_batch.png", "throughput_vs_concurrency.png"):
        assert Image.open(out / name).size[0] > 300


def test_onnx_runtime_backends_run_without_tensorflow(exported, tmp_path):
    """The GPU machines we borrow have ONNX Runtime but no TensorFlow: that part of the benchmark must run there."""
    import subprocess
    out = tmp_path / "latency"
    blocked = ("import runpy, sys\n"
               "for name in ('tensorflow', 'keras', 'tf2onnx', 'tensorflow_serving'):\n"
               "    sys.modules[name] = None  # any import of them now fails\n"
               f"sys.argv = ['latency.py', '--model-dir', {str(exported[0].parent)!r}, '--out', {str(out)!r},\n"
               "            '--backends', 'onnx-cuda,onnx-cpu', '--batches', '1,2', '--sizes', '8', '--seconds', '0.1',\n"
               "            '--min-requests', '2', '--warmup', '1']\n"
               "sys.path.insert(0, 'benchmarks')  # as 'python benchmarks/latency.py' has it\n"
               "runpy.run_path('benchmarks/latency.py', run_name='__main__')\n")
    result = subprocess.run([sys.executable, "-c", blocked], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads((out / "latency.json").read_text())
    assert {p["backend"] for p in data["points"]} == {"onnx-cpu"}  # no CUDA here; no SavedModel, no gRPC asked
    assert data["environment"]["onnxruntime"] and len(data["points"]) == 2


def test_server_backend_benchmark_runs_without_tensorflow(exported, tmp_path):
    """The server's runner under concurrent callers, batching off and on, as on a borrowed GPU machine (no
    TensorFlow); on a CPU the three GPU modes are one runner, measured once."""
    import subprocess
    out = tmp_path / "server_backend"
    blocked = ("import runpy, sys\n"
               "for name in ('tensorflow', 'keras', 'tf2onnx', 'tensorflow_serving'):\n"
               "    sys.modules[name] = None  # any import of them now fails\n"
               f"sys.argv = ['server_backend.py', '--model-dir', {str(exported[0].parent)!r}, '--out', {str(out)!r},\n"
               "            '--clients', '1,3', '--sizes', '8', '--seconds', '0.1', '--min-requests', '2']\n"
               "sys.path.insert(0, 'benchmarks')\n"
               "runpy.run_path('benchmarks/server_backend.py', run_name='__main__')\n")
    result = subprocess.run([sys.executable, "-c", blocked], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    points = json.loads((out / "server_backend.json").read_text())["points"]
    assert [(p["mode"], p["batching"], p["clients"]) for p in points] == [
        ("run", False, 1), ("run", False, 3), ("run", True, 1), ("run", True, 3)]
    for p in points:
        assert p["provider"] == "CPUExecutionProvider" and p["requests"] >= 2 and p["images_per_second"] > 0
    assert "iobinding: runs as run on CPUExecutionProvider" in result.stdout
    assert "| run | CPU | 8² | on | 3 |" in (out / "server_backend.md").read_text()
