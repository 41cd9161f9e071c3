"""`python -m workflows.demo`: the serving step of the quick start, end to end over real gRPC.

Starts the embedded TF Serving-compatible server on a free port of 127.0.0.1 with a TF Serving model config that
serves every --model-dir (the PSNR model and the GAN model in the quick start), waits until each model's newest
version is AVAILABLE, takes a photograph (by default one the shipped models never saw), degrades it ×4 as
training does, sends the small image to each model through the client, checks each answer against ONNX Runtime
in this process, scores them and bicubic against the original (PSNR and SSIM on Y, and NIQE), saves the pictures
as PNG, then stops the server with SIGTERM and checks it drained and exited cleanly.

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
from core.export_record import ExportRecord
from core.repository import ONNX_UINT8
from serving.client import SrganClient
from serving.onnx_runtime import create_session
from serving.process import EmbeddedServer


def _default_photo() -> Path:
    from training.data.photos import HELD_OUT_PHOTOS
    return HELD_OUT_PHOTOS[-1].path()  # a portrait, never trained on


def write_model_config(model_dirs: list[Path], path: Path) -> Path:
    """TF Serving's model config (a ModelServerConfig text proto) serving each model folder under its name."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2
    config = model_server_config_pb2.ModelServerConfig()
    for model_dir in model_dirs:
        model = config.model_config_list.config.add()
        model.name, model.base_path, model.model_platform = model_dir.name, str(model_dir.resolve()), "tensorflow"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text_format.MessageToString(config))
    return path


@exit_on_user_error
def run(model_dirs: list[Path], image_path: Path | None, out_dir: Path) -> int:
    from training import evaluation
    from training.data.images import BadImage, read_rgb
    from training.niqe import niqe

    names = [d.name for d in model_dirs]
    if len(set(names)) != len(names):
        raise UserError(f"two --model-dir folders have the same name ({', '.join(names)}); TF Serving serves a "
                        "model by its folder's name.")
    version_dirs = [find_version(model_dir) for model_dir in model_dirs]
    image_path = image_path or _default_photo()
    if not image_path.is_file():
        raise UserError(f"{image_path} does not exist; pass --image with a photograph.")
    try:
        pair = evaluation.make_pair(image_path.stem, read_rgb(image_path, min_size=16)[0])
    except BadImage as bad:
        raise UserError(f"{image_path} cannot be used ({bad.reason}); pass --image with a photograph.") from None
    image = pair.lr
    config_path = write_model_config(model_dirs, out_dir / "models.config")
    server = EmbeddedServer("--model_config_file", str(config_path))
    answers = {}
    try:
        for name in names:
            with SrganClient(server.target, model_name=name) as client:
                client.wait_until_available()
                started = time.perf_counter()
                answers[name] = (client.upscale(image), time.perf_counter() - started)
    finally:
        status = server.stop()
    out_dir.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(out_dir / f"{image_path.stem}_lr.png")
    bicubic = evaluation.BASELINES["bicubic"](image, 4)
    Image.fromarray(bicubic).save(out_dir / f"{image_path.stem}_bicubic_x4.png")
    bicubic_score = evaluation.score_image(bicubic, pair.hr, 4)
    print(f"{image_path.name} downscaled ×4 ({image.shape[1]}×{image.shape[0]}), upscaled by each model served by "
          f"one server (gRPC {server.target}, {config_path}); bicubic PSNR {bicubic_score['psnr']:.2f} dB, SSIM "
          f"{bicubic_score['ssim']:.4f}, NIQE {bicubic_score['niqe']:.2f} (original's NIQE "
          f"{niqe(pair.hr, 4):.2f}; lower is more natural)")
    worst_difference = 0
    for (name, (sr, seconds)), version_dir in zip(answers.items(), version_dirs):
        reference = create_session(version_dir / ONNX_UINT8).run(None, {contract.UINT8_INPUT: image[None]})[0][0]
        diff = np.abs(sr.astype(int) - reference)
        worst_difference = max(worst_difference, int(diff.max()))
        out_path = out_dir / f"{image_path.stem}_{name}_grpc_x4.png"
        Image.fromarray(sr).save(out_path)
        score = evaluation.score_image(sr, pair.hr, 4)
        print(f"  {name} (version {version_dir.name}, {ExportRecord.load(version_dir).objective}): gRPC answer PSNR "
              f"{score['psnr']:.2f} dB, SSIM {score['ssim']:.4f}, NIQE {score['niqe']:.2f} "
              f"({score['psnr'] - bicubic_score['psnr']:+.2f} dB, {score['niqe'] - bicubic_score['niqe']:+.2f} NIQE "
              f"against bicubic) in {seconds * 1000:.0f} ms (first request); vs ONNX Runtime: "
              f"{100 * (diff == 0).mean():.3f} % identical, max difference {diff.max()}; saved {out_path}")
    clean = status == 0 and any(line.rstrip().endswith("stopped") for line in server.lines)
    print(f"server stopped on SIGTERM, exit status {status}" + ("" if clean else " (NOT clean)"))
    return 0 if clean and worst_difference <= 1 else 1


def main(argv=None) -> int:
    p = parser("python -m workflows.demo", __doc__)
    p.add_argument("--model-dir", dest="model_dirs", type=Path, action="append",
                   help="a model folder to serve (its folder name is the model name); repeatable: one server "
                        "serves them all from a TF Serving model config (default: models/srgan)")
    p.add_argument("--image", type=Path,
                   help="a photograph (default: matplotlib's grace_hopper.jpg, held out from training)")
    p.add_argument("--out", type=Path, default=Path("results"))
    args = p.parse_args(argv)
    return run(args.model_dirs or [Path("models/srgan")], args.image, args.out)


if __name__ == "__main__":
    sys.exit(main())
