"""`python -m workflows.demo`: the serving step of the quick start, end to end over real gRPC.

Starts the embedded TF Serving-compatible server on a free port of 127.0.0.1, waits until the newest version
is AVAILABLE, takes a photograph (by default one the shipped model never saw), degrades it ×4 as training
does, sends the small image through the client, checks the answer against ONNX Runtime in this process,
scores it and bicubic against the original (PSNR on Y), saves the pictures as PNG, then stops the server
with SIGTERM and checks it drained and exited cleanly.

The quick start's serving step, above both training and serving: it uses training's degradation and metric
code so that its PSNR is the one `benchmarks/quality.py` and training report.
"""

import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from core import contract
from core.cli import UserError, exit_on_user_error, find_version, parser
from serving.client import SrganClient
from serving.onnx_runtime import create_session
from serving.process import EmbeddedServer


def _default_photo() -> Path:
    from training.data.photos import HELD_OUT_PHOTOS
    return HELD_OUT_PHOTOS[-1].path()  # a portrait, never trained on


@exit_on_user_error
def run(model_dir: Path, image_path: Path | None, out_dir: Path) -> int:
    from training import evaluation
    from training.data.images import BadImage, read_rgb

    version_dir = find_version(model_dir)
    image_path = image_path or _default_photo()
    if not image_path.is_file():
        raise UserError(f"{image_path} does not exist; pass --image with a photograph.")
    try:
        pair = evaluation.make_pair(image_path.stem, read_rgb(image_path, min_size=16)[0])
    except BadImage as bad:
        raise UserError(f"{image_path} cannot be used ({bad.reason}); pass --image with a photograph.") from None
    image = pair.lr
    server = EmbeddedServer("--model_base_path", str(model_dir))
    try:
        with SrganClient(server.target) as client:
            client.wait_until_available()
            started = time.perf_counter()
            sr = client.upscale(image)
            seconds = time.perf_counter() - started
    finally:
        status = server.stop()
    reference = create_session(version_dir / "model.onnx").run(None, {contract.UINT8_INPUT: image[None]})[0][0]
    diff = np.abs(sr.astype(int) - reference)
    out_dir.mkdir(parents=True, exist_ok=True)
    out_path = out_dir / f"{image_path.stem}_grpc_x4.png"
    Image.fromarray(sr).save(out_path)
    Image.fromarray(image).save(out_dir / f"{image_path.stem}_lr.png")
    bicubic = evaluation.BASELINES["bicubic"](image, 4)
    Image.fromarray(bicubic).save(out_dir / f"{image_path.stem}_bicubic_x4.png")
    model_score, bicubic_score = (evaluation.score_image(x, pair.hr, 4) for x in (sr, bicubic))
    print(f"gRPC {server.target}: {image.shape[1]}×{image.shape[0]} → {sr.shape[1]}×{sr.shape[0]} in {seconds * 1000:.0f} ms "
          f"(first request); vs ONNX Runtime: {100 * (diff == 0).mean():.3f} % identical, max difference "
          f"{diff.max()}; saved {out_path}")
    print(f"{image_path.name} downscaled ×4 and upscaled again: gRPC answer PSNR {model_score['psnr']:.2f} dB, "
          f"SSIM {model_score['ssim']:.4f}; bicubic {bicubic_score['psnr']:.2f} dB, {bicubic_score['ssim']:.4f} "
          f"({model_score['psnr'] - bicubic_score['psnr']:+.2f} dB over bicubic)")
    clean = status == 0 and any(line.rstrip().endswith("stopped") for line in server.lines)
    print(f"server stopped on SIGTERM, exit status {status}" + ("" if clean else " (NOT clean)"))
    return 0 if clean and diff.max() <= 1 else 1


def main(argv=None) -> int:
    p = parser("python -m workflows.demo", __doc__)
    p.add_argument("--model-dir", type=Path, default=Path("models/srgan"))
    p.add_argument("--image", type=Path,
                   help="a photograph (default: matplotlib's grace_hopper.jpg, held out from training)")
    p.add_argument("--out", type=Path, default=Path("results"))
    args = p.parse_args(argv)
    return run(args.model_dir, args.image, args.out)


if __name__ == "__main__":
    sys.exit(main())
