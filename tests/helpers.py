"""The tests' helpers, in one module: paths, tiny training runs, images, and the embedded server as a real
process on 127.0.0.1. Fixtures live in conftest.py."""

import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import grpc
import numpy as np
from PIL import Image
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tensorflow.core.framework import tensor_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from serving import tensors
from serving.process import EmbeddedServer


REPO = Path(__file__).resolve().parents[1]

# A generator and discriminator small enough for a CPU test, the article's layout otherwise.
TINY_MODEL = ["--channels", "8", "--residual-blocks", "2", "--disc-channels", "4", "--disc-dense", "8"]


# The deployment gate with thresholds a 3-step model passes, for tests of what happens around a blessed export.
LOOSE_GATE = ["--min-gain", "-100", "--min-worst-gain", "-100", "--max-colour-shift", "255"]


def gate_photographs(folder: Path, names=("chelsea.png", "coffee.png")) -> Path:
    """Small crops of real photographs (scikit-image's), for a deployment gate of seconds."""
    from training.data.sources import demo_photo_dir
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        rgb = np.asarray(Image.open(demo_photo_dir() / name).convert("RGB"))
        Image.fromarray(rgb[40:136, 60:188]).save(folder / name)
    return folder


def tiny_run_args(out_dir: Path, cache_dir: Path, *extra: str) -> list[str]:
    """`python -m training.run` arguments for a run of seconds: tiny networks, 32×32 crops, no XLA."""
    return [*TINY_MODEL, "--crop-size", "32", "--batch-size", "2", "--pretrain-steps", "2",
            "--epochs", "2", "--steps-per-epoch", "2", "--checkpoint-every", "1", "--no-xla",
            "--content-loss", "mse", "--seed", "1", "--run-dir", str(out_dir), "--cache-dir", str(cache_dir),
            *extra]


def run_module(module: str, *args: str, env: dict | None = None, timeout: float = 300,
               **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})}, **kwargs)


def write_image(path: Path, array: np.ndarray, **save_kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **save_kwargs)
    return path


def random_images(shape, seed=0) -> np.ndarray:
    """uint8 RGB of `shape` + (3,), the same for the same seed."""
    return np.random.default_rng(seed).integers(0, 256, (*shape, 3), dtype=np.uint8)


def png(image: np.ndarray) -> bytes:
    from core.images import encode_png
    return encode_png(image)


class ServerProcess(EmbeddedServer):
    """The embedded server started from the repository root, as the tests run it."""

    def __init__(self, *args: str):
        super().__init__(*args, timeout=120, cwd=REPO)


def copy_version(src, base, version):
    staging = base / f".copy-{version}"
    shutil.copytree(src, staging)
    staging.rename(base / str(version))  # appears atomically, as export does it


def raw_predict(target, inputs, name="srgan", signature="", version=None, label=None, output_filter=(),
                timeout=60):
    request = predict_pb2.PredictRequest(output_filter=list(output_filter))
    request.model_spec.name = name
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    if label:
        request.model_spec.version_label = label
    for key, value in inputs.items():
        request.inputs[key].CopyFrom(value if isinstance(value, tensor_pb2.TensorProto) else tensors.to_proto(value))
    with grpc.insecure_channel(target, options=[("grpc.max_send_message_length", 1 << 30),
                                                ("grpc.max_receive_message_length", -1)]) as channel:
        return prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=timeout)


def repository_with(version_dir: Path, parent: Path) -> Path:
    """A model folder `parent/srgan` whose version 1 is a copy of `version_dir`."""
    base = parent / "srgan"
    base.mkdir(parents=True)
    copy_version(version_dir, base, 1)
    return base


def healthy(target) -> bool:
    with grpc.insecure_channel(target) as channel:
        answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    return answer.status == health_pb2.HealthCheckResponse.SERVING


def rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def peak_rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def png_claiming(width: int, height: int) -> bytes:
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) \
        + chunk(b"IEND", b"")
