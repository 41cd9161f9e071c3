"""Reading one image file into RGB uint8, or saying in a word why it cannot be used."""

import collections
import dataclasses
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}


class BadImage(Exception):
    """The file cannot be used; `reason` is a short word or phrase for the report."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def read_rgb(path: Path, min_size: int = 0) -> tuple[np.ndarray, bool]:
    """The image as H×W×3 uint8, and whether it had to be converted (grey, alpha, palette, 16-bit…).

    Read by `core.images.read_picture` (the reader `serving.upscale` uses too): oversize files refused
    from their header, EXIF orientation applied, 16-bit scaled; alpha is composited on white here.
    Raises `BadImage`.
    """
    from core.images import UnreadableImage, read_picture
    try:
        picture = read_picture(path)
    except UnreadableImage as error:
        reason = error.reason.split(" (")[0]  # the report counts by reason: "too large", "unreadable", …
        raise BadImage(reason) from None
    rgb = picture.rgb
    if picture.alpha is not None:
        a = picture.alpha[..., None].astype(np.float32) / 255.0
        rgb = np.round(rgb * a + 255.0 * (1.0 - a)).astype(np.uint8)
    if min(rgb.shape[:2]) < min_size:
        raise BadImage(f"smaller than {min_size}×{min_size}")
    return rgb, picture.converted


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
