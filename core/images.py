"""Opening an image file safely, the one reader for training's data and for `serving.upscale`.

The pixel count is read from the header and checked before anything is decoded (a 58-byte PNG may claim
100 000 × 100 000 pixels), EXIF orientation is applied, and every mode is brought to 8 bits per channel the
same way: 16-bit and 32-bit grey scaled (not clipped), grey stays grey, alpha is kept apart.
"""

import dataclasses
import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

DEFAULT_MAX_PIXELS = 100_000_000  # 100 megapixels: beyond this a file is refused before it is decoded


class UnreadableImage(Exception):
    """The file cannot be used; `reason` is a short phrase for a report."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class Picture:
    rgb: np.ndarray  # uint8 H×W×3
    alpha: np.ndarray | None  # uint8 H×W, or None
    grey: bool  # the file had no colour
    converted: bool  # the file was not plain 8-bit RGB


def _eight_bit_grey(image: Image.Image) -> Image.Image:
    # 16-bit ("I;16…") and 32-bit ("I", "F") grey: scale to 0–255 rather than clip.
    values = np.asarray(image, dtype=np.float64)
    if image.mode == "F":
        values = values * 255.0 if values.max(initial=0.0) <= 1.0 else values
    elif image.mode == "I" and values.max(initial=0) <= 255:
        pass  # 8-bit values stored in 32-bit integers
    else:
        values = values / 257.0
    return Image.fromarray(values.round().clip(0, 255).astype(np.uint8))


def read_picture(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> Picture:
    """Read one file; raises `UnreadableImage` for empty, corrupt, truncated, unknown or oversize files."""
    path = Path(path)
    if path.stat().st_size == 0:
        raise UnreadableImage("empty file")
    with open(path, "rb") as file:
        return decode_picture(file, max_pixels)


def decode_picture(file, max_pixels: int = DEFAULT_MAX_PIXELS) -> Picture:
    """`read_picture` on an open binary file (any file system's: a Beam or tf.io.gfile file object)."""
    if not file.read(1):
        raise UnreadableImage("empty file")
    file.seek(0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(file) as image:
                width, height = image.size
                if width * height > max_pixels:  # from the header: nothing decoded yet
                    raise UnreadableImage(f"too large ({width}×{height} pixels, over {max_pixels})")
                image.load()
                image = ImageOps.exif_transpose(image)
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise UnreadableImage("too large (a decompression bomb)") from None
    except (OSError, ValueError, SyntaxError) as error:  # what PIL raises for corrupt or unknown data
        raise UnreadableImage(f"unreadable ({str(error).splitlines()[0][:120] if str(error) else 'corrupt'})") \
            from error
    mode = image.mode
    alpha = None
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        alpha = np.asarray(rgba.getchannel("A"))
        image = rgba.convert("RGB") if mode != "LA" else image.convert("L")
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        image = _eight_bit_grey(image)
    grey = image.mode in ("L", "1")
    return Picture(np.asarray(image.convert("RGB")), alpha, grey, mode != "RGB")


def encode_png(rgb: np.ndarray) -> bytes:
    """uint8 H×W×3 (or H×W) as PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()
