"""`python -m serving.demo`: the serving step of the quick start, end to end over real gRPC.

Starts the embedded TF Serving-compatible server on a free port of 127.0.0.1, waits until the newest version
is AVAILABLE, sends a real image through the client, checks the answer against ONNX Runtime in this process,
saves the result as PNG, then stops the server with SIGTERM and checks it drained and exited cleanly.
"""

import argparse
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from serving.client import SrganClient
from serving.errors import UsageError, exit_on_usage_error
from serving.model_repository import resolve_version_dir
from serving.onnx_runtime import create_session


def start_server(model_dir: Path, *flags: str) -> tuple[subprocess.Popen, str]:
    """The embedded server as a child process; returns it with its host:port once it listens."""
    process = subprocess.Popen([sys.executable, "-m", "serving.server", "--port", "0", "--model_base_path",
                                str(model_dir), *flags], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    for line in process.stdout:
        if line.startswith("listening on"):
            return process, line.split()[-1]
    raise UsageError(f"the server did not start (exit status {process.wait()}).")


@exit_on_usage_error
def run(model_dir: Path, image_path: Path, out_dir: Path) -> int:
    try:
        version_dir = resolve_version_dir(model_dir)
    except FileNotFoundError as error:
        raise UsageError(f"{error}; export one with python -m export.to_onnx.") from None
    if not image_path.is_file():
        raise UsageError(f"{image_path} does not exist; pass --image with a picture to send.")
    image = np.asarray(Image.open(image_path).convert("RGB"))
    process, target = start_server(model_dir)
    try:
        with SrganClient(target) as client:
            client.wait_until_available()
            started = time.perf_counter()
            sr = client.upscale(image)
            seconds = time.perf_counter() - started
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    reference = create_session(version_dir / "model.onnx").run(None, {"images": image[None]})[0][0]
    diff = np.abs(sr.astype(int) - reference)
    out_dir.mkdir(parents=True, exist_ok=True)
    out_path = out_dir / f"{image_path.stem}_grpc_x4.png"
    Image.fromarray(sr).save(out_path)
    print(f"gRPC {target}: {image.shape[1]}×{image.shape[0]} → {sr.shape[1]}×{sr.shape[0]} in {seconds * 1000:.0f} ms "
          f"(first request); vs ONNX Runtime: {100 * (diff == 0).mean():.3f} % identical, max difference "
          f"{diff.max()}; saved {out_path}")
    clean = process.returncode == 0 and "stopped" in output
    print(f"server stopped on SIGTERM, exit status {process.returncode}" + ("" if clean else " (NOT clean)"))
    return 0 if clean and diff.max() <= 1 else 1


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m serving.demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--model-dir", type=Path, default=Path("models/srgan"))
    p.add_argument("--image", type=Path, default=Path("runs/demo/test_images/lr/00.png"))
    p.add_argument("--out", type=Path, default=Path("results"))
    args = p.parse_args(argv)
    return run(args.model_dir, args.image, args.out)


if __name__ == "__main__":
    sys.exit(main())
