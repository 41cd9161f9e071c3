"""`python -m serving.upscale`: upscale image files ×4 through ONNX Runtime, the SavedModel or gRPC.

    python -m serving.upscale photo.jpg scans/*.png -o upscaled/ --backend onnx --model-dir models/srgan
    python -m serving.upscale photo.jpg -o upscaled/ --backend grpc --target 127.0.0.1:8500
    python -m serving.upscale photo.jpg -o upscaled/ --backend rest --target 127.0.0.1:8501

Large images are cut into tiles with enough overlap that the stitched result equals whole-image inference.
EXIF orientation is applied; grey-scale images (16-bit ones scaled, as training reads them) come back
grey-scale; an alpha channel is upscaled bicubic beside the model's RGB. A file that cannot be used (corrupt,
truncated, or claiming more than --max-pixels in its header: refused before decoding) is reported and
skipped; the others are still processed and a summary is printed (exit status 1 if any failed).

Each output is `<-o>/<name>_x4.png`, written under a temporary name and renamed (never half-written). Before
any work, a run that would write two inputs to one output, or an output over one of its inputs, or whose -o is
a file, is refused in one sentence (exit status 2).
"""

import dataclasses
import os
import sys
import uuid
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from core import contract
from core.cli import UserError, exit_on_user_error, find_version, parser
from core.export_record import ExportRecord
from core.images import DEFAULT_MAX_PIXELS, Picture, UnreadableImage, read_picture
from core.model_spec import DEFAULT_TILE
from serving.errors import describe
from serving.tiling import tiled_upscale


@dataclasses.dataclass(frozen=True)
class UpscaleConfig:
    inputs: tuple[Path, ...]
    out: Path
    backend: str = "onnx"
    model_dir: Path = Path("models/srgan")
    target: str | None = None  # host:port of the server; default: 127.0.0.1:8500 (grpc) or :8501 (rest)
    model_name: str = contract.MODEL_NAME
    tile: int = DEFAULT_TILE
    overlap: int | None = None  # default: the generator's receptive-field radius
    max_pixels: int = DEFAULT_MAX_PIXELS  # larger files are refused from their header, before decoding


def parse_args(argv=None) -> UpscaleConfig:
    p = parser("python -m serving.upscale", __doc__)
    p.add_argument("inputs", nargs="+", type=Path, help="image files")
    p.add_argument("-o", "--out", type=Path, required=True, help="folder for the upscaled images")
    p.add_argument("--backend", choices=["onnx", "savedmodel", "grpc", "rest"], default="onnx",
                   help="grpc and rest: a running TF Serving (or serving.server) through that API")
    p.add_argument("--protocol", dest="backend", choices=["grpc", "rest"],
                   help="the same as --backend grpc|rest")
    p.add_argument("--model-dir", type=Path, default=Path("models/srgan"),
                   help="model directory (newest version) or one version directory")
    p.add_argument("--target", help="host:port of TF Serving (default 127.0.0.1:8500 for grpc, 127.0.0.1:8501 for "
                                    "rest)")
    p.add_argument("--model-name", default=contract.MODEL_NAME)
    p.add_argument("--tile", type=int, default=DEFAULT_TILE, help="input tile side in pixels")
    p.add_argument("--overlap", type=int, help="input pixels added around each tile (default: receptive field)")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                   help="refuse files whose header claims more input pixels (checked before decoding)")
    args = p.parse_args(argv)
    return UpscaleConfig(tuple(args.inputs), args.out, args.backend, args.model_dir, args.target,
                         args.model_name, args.tile, args.overlap, args.max_pixels)


def local_version(config: UpscaleConfig) -> Path | None:
    """The version folder the local backends read; None for a server (gRPC, REST)."""
    return find_version(config.model_dir) if config.backend in ("onnx", "savedmodel") else None


def make_upscaler(config: UpscaleConfig, version_dir: Path | None):
    """uint8 NHWC → uint8 NHWC for the chosen backend (`version_dir` from `local_version`)."""
    if config.backend == "grpc":
        from serving.client import SrganClient
        return SrganClient(config.target or contract.LOCAL_GRPC, config.model_name).upscale
    if config.backend == "rest":
        from serving.rest_client import SrganRestClient
        return SrganRestClient(config.target or contract.LOCAL_REST, config.model_name).upscale
    from serving.local import batch_upscaler
    return batch_upscaler(version_dir, config.backend)


def upscale_picture(picture: Picture, upscale, scale: int, tile: int, overlap: int) -> Image.Image:
    return as_file_image(tiled_upscale(picture.rgb, upscale, scale, tile, overlap), picture)


def as_file_image(sr_rgb, picture: Picture) -> Image.Image:
    """The upscaled RGB as the input file was: grey stays grey, its alpha channel upscaled bicubic beside it."""
    sr = Image.fromarray(sr_rgb)
    if picture.grey:
        sr = sr.convert("L")
    if picture.alpha is not None:
        sr = sr.convert("LA" if picture.grey else "RGBA")
        sr.putalpha(Image.fromarray(picture.alpha).resize(sr.size, Image.Resampling.BICUBIC))
    return sr


def output_path(path: Path, out: Path, scale: int) -> Path:
    return out / f"{path.stem}_x{scale}.png"


def check_outputs(inputs: tuple[Path, ...], out: Path, scale: int) -> None:
    """Before any work: an output folder that is not a file, no two inputs written to one output, no output
    that is one of the inputs. A UserError says which."""
    if out.exists() and not out.is_dir():
        raise UserError(f"-o {out} is a file; pass a folder for the upscaled images.")
    claimed = {}
    for path in inputs:
        claimed.setdefault(output_path(path, out, scale).resolve(), []).append(path)
    for target, sources in claimed.items():
        if len(sources) > 1:
            raise UserError(f"{', '.join(map(str, sources))} would all be written as {target}; upscale them in "
                            "separate runs or into different -o folders.")
    readonly = {path.resolve() for path in inputs}
    for target, (source,) in claimed.items():
        if target in readonly:
            raise UserError(f"upscaling {source} would overwrite the input {target}; choose another -o folder.")


def save_atomically(image: Image.Image, path: Path) -> None:
    """Written under a temporary name and renamed: an output that exists is complete."""
    # A short name of its own: the output's name plus a prefix and suffix could pass the file system's 255 bytes.
    temporary = path.with_name(f".{uuid.uuid4().hex[:16]}.partial")
    try:
        image.save(temporary, format="PNG")
        os.replace(temporary, path)
    except BaseException:  # a full disk, Ctrl-C: no half-written file left behind
        temporary.unlink(missing_ok=True)
        raise


@exit_on_user_error
def run(config: UpscaleConfig) -> int:
    version_dir = local_version(config)  # once: the spec and the runner come from the same version
    spec = ExportRecord.load(version_dir).model_spec
    scale, radius = spec.scale, spec.receptive_radius
    check_outputs(config.inputs, config.out, scale)
    upscale = make_upscaler(config, version_dir)
    overlap = radius if config.overlap is None else config.overlap
    config.out.mkdir(parents=True, exist_ok=True)
    failed, finished = [], 0
    try:
        for path in tqdm(config.inputs, desc="upscaling", unit="img"):
            try:
                picture = read_picture(path, config.max_pixels)
                result = upscale_picture(picture, upscale, scale, config.tile, overlap)
                save_atomically(result, output_path(path, config.out, scale))
            except UnreadableImage as error:
                failed.append((path, error.reason))
            except Exception as error:  # noqa: BLE001 - one file's failure (a refused request…) never stops the rest
                failed.append((path, describe(error)))
            finished += 1
    except KeyboardInterrupt:
        print(f"interrupted: {finished - len(failed)} of {len(config.inputs)} images upscaled into {config.out}, "
              "each complete", file=sys.stderr)
        return 130
    done = len(config.inputs) - len(failed)
    print(f"upscaled {done} of {len(config.inputs)} images ×{scale} into {config.out}")
    for path, reason in failed:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    return 1 if failed else 0


def main(argv=None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
