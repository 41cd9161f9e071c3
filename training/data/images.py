"""Reading one image file into RGB uint8, or saying in a word why it cannot be used."""

import collections
import dataclasses
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}


class BadImage(Exception):
    """The file cannot be used; `reason` is a short word or phrase for the report."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def read_rgb(path: Path, min_size: int = 0) -> tuple[np.ndarray, bool]:
    """The image as H×W×3 uint8, and whether it had to be converted (grey, alpha, palette, 16-bit…).

    EXIF orientation is applied, alpha is composited on white. Raises `BadImage`.
    """
    path = Path(path)
    if path.stat().st_size == 0:
        raise BadImage("empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.load()
                converted = image.mode != "RGB"
                image = ImageOps.exif_transpose(image)
                if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
                    rgba = image.convert("RGBA")
                    image = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
                elif image.mode in ("I;16", "I;16B", "I;16L", "I"):
                    # 16-bit grey: scale to 8 bits rather than clip.
                    image = Image.fromarray((np.asarray(image, dtype=np.float64) / 257.0).round()
                                            .clip(0, 255).astype(np.uint8))
                rgb = np.asarray(image.convert("RGB"))
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise BadImage("too large") from None
    except (OSError, ValueError, SyntaxError) as error:  # what PIL raises for corrupt or unknown data
        raise BadImage("unreadable") from error
    if min(rgb.shape[:2]) < min_size:
        raise BadImage(f"smaller than {min_size}×{min_size}")
    return rgb, converted


def center_crop(rgb: np.ndarray, size: int) -> np.ndarray:
    """The central size×size window (a crop, never a resize)."""
    h, w = rgb.shape[:2]
    top, left = (h - size) // 2, (w - size) // 2
    return rgb[top:top + size, left:left + size]


def save_png(rgb: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path, format="PNG")


@dataclasses.dataclass
class ImageReport:
    """What happened to the files of a source: used, converted, and skipped by reason."""

    used: int = 0
    converted: int = 0
    skipped: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    examples: dict = dataclasses.field(default_factory=dict)  # reason -> a few file names

    def skip(self, path: Path, reason: str) -> None:
        self.skipped[reason] += 1
        self.examples.setdefault(reason, [])
        if len(self.examples[reason]) < 3:
            self.examples[reason].append(Path(path).name)

    def summary(self) -> str:
        text = f"{self.used} images used"
        if self.converted:
            text += f", {self.converted} converted to RGB"
        if self.skipped:
            reasons = ", ".join(f"{n} {reason} (e.g. {', '.join(self.examples[reason])})"
                                for reason, n in sorted(self.skipped.items()))
            text += f"; skipped {sum(self.skipped.values())}: {reasons}"
        return text

    def to_dict(self) -> dict:
        return {"used": self.used, "converted": self.converted, "skipped": dict(self.skipped),
                "examples": self.examples}

    @classmethod
    def from_dict(cls, data: dict) -> "ImageReport":
        return cls(data["used"], data["converted"], collections.Counter(data["skipped"]), data["examples"])
