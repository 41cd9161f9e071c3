"""The standard super-resolution benchmark sets (Set5, Set14, BSD100, Urban100, …) as HR/LR pairs, read the way
the papers evaluate them: HR cropped to a multiple of the scale, the set's own LR where it ships one.

Layouts read, in this order:
- pairs in one folder, `<name>_HR.png` beside `<name>_LR.png` (SelfExSR's `image_SRF_4`, as in the SRGAN paper);
- BasicSR's folders: `GTmod12/` (or `HR/`, `GT/`) with `LRbicx4/` (or `LR_bicubic/X4/`, `LR/`) beside it, the
  same stem in both (`0801x4.png` for `0801.png` as DIV2K names them is accepted too);
- a folder of HR images alone: LR made by the toolkit's degradation (antialiased bicubic), and said so.

The scores beside ours are the SRGAN paper's (Ledig et al., "Photo-Realistic Single Image Super-Resolution
Using a Generative Adversarial Network", CVPR 2017, Table 4: ×4, PSNR on Y, `scale`-pixel border).
"""

import dataclasses
import re
from pathlib import Path

import numpy as np

from core.cli import UserError
from training.data.images import BadImage, read_rgb
from training.data.sources import list_images
from training.evaluation import Pair, make_pair

HR_FOLDERS = ("GTmod12", "HR", "GT", "hr")
LR_FOLDERS = ("LRbicx{scale}", "LR_bicubic/X{scale}", "LR", "lr")

# Ledig et al. 2017, Table 4 (×4; PSNR dB / SSIM on Y, 4-pixel border). Keys: the folder names users give.
PAPER = "SRGAN paper (Ledig et al., CVPR 2017, Table 4)"
PAPER_FIGURES = {
    "set5": {"bicubic": (28.43, 0.8211), "SRResNet": (32.05, 0.9019), "SRGAN": (29.40, 0.8472)},
    "set14": {"bicubic": (25.99, 0.7486), "SRResNet": (28.49, 0.8184), "SRGAN": (26.02, 0.7397)},
    "bsd100": {"bicubic": (25.94, 0.6935), "SRResNet": (27.58, 0.7620), "SRGAN": (25.16, 0.6688)},
}


@dataclasses.dataclass(frozen=True)
class BenchmarkSet:
    name: str
    pairs: list[Pair]
    layout: str  # "pairs" | "folders" | "hr only"
    lr_made: bool  # True: the LR was made here (antialiased bicubic), not shipped with the set

    @property
    def paper_figures(self) -> dict | None:
        return PAPER_FIGURES.get(self.name.lower())

    def describe(self) -> str:
        source = ("LR made here by antialiased bicubic ×1/4 (the set ships none)" if self.lr_made
                  else "the set's own LR")
        return f"{len(self.pairs)} images ({self.layout}), {source}"


def _read(path: Path) -> np.ndarray:
    try:
        return read_rgb(path)[0]
    except BadImage as error:
        raise UserError(f"{path} cannot be read as an image ({error}).") from None


def _pair(name: str, hr_path: Path, lr_path: Path, scale: int) -> Pair:
    hr, lr = _read(hr_path), _read(lr_path)
    h, w = lr.shape[0] * scale, lr.shape[1] * scale
    # The paper's modcrop: HR cropped to a multiple of the scale, which must then be exactly LR × scale.
    if (hr.shape[0] // scale * scale, hr.shape[1] // scale * scale) != (h, w):
        raise UserError(f"{hr_path.name} is {hr.shape[1]}×{hr.shape[0]} but its LR {lr_path.name} is "
                        f"{lr.shape[1]}×{lr.shape[0]}, not 1/{scale} of it; pass the ×{scale} LR images.")
    return Pair(name, lr, hr[:h, :w])


def _lr_for(hr_path: Path, lr_dir: Path, scale: int) -> Path | None:
    for stem in (hr_path.stem, f"{hr_path.stem}x{scale}"):
        for candidate in sorted(lr_dir.glob(f"{stem}.*")):
            return candidate
    return None


def read_set(name: str, directory: Path, scale: int = 4) -> BenchmarkSet:
    """The set in `directory`, in whichever layout it comes; a UserError (one sentence) for a missing folder, an
    empty one, an HR without its LR, or an LR that is not 1/scale of its HR."""
    directory = Path(directory)
    if not directory.is_dir():
        raise UserError(f"--dataset {name}={directory}: no such folder.")
    images = list_images(directory, recursive=False)
    hr_files = [p for p in images if p.stem.endswith("_HR")]
    if hr_files:
        pairs = []
        for hr_path in hr_files:
            base = hr_path.stem[:-3]
            lr_path = next((p for p in images if p.stem == f"{base}_LR"), None)
            if lr_path is None:
                raise UserError(f"{hr_path} has no {base}_LR image beside it.")
            pairs.append(_pair(re.sub(r"_SRF_\d+$", "", base), hr_path, lr_path, scale))
        return BenchmarkSet(name, pairs, "pairs", lr_made=False)
    hr_dir = next((directory / f for f in HR_FOLDERS if (directory / f).is_dir()), None)
    lr_dir = next((directory / f.format(scale=scale) for f in LR_FOLDERS
                   if (directory / f.format(scale=scale)).is_dir()), None)
    if hr_dir is not None and lr_dir is not None:
        pairs = []
        for hr_path in list_images(hr_dir, recursive=False):
            lr_path = _lr_for(hr_path, lr_dir, scale)
            if lr_path is None:
                raise UserError(f"{hr_path} has no LR image of the same name in {lr_dir}.")
            pairs.append(_pair(hr_path.stem, hr_path, lr_path, scale))
        if not pairs:
            raise UserError(f"--dataset {name}={directory}: {hr_dir} holds no images.")
        return BenchmarkSet(name, pairs, "folders", lr_made=False)
    hr_paths = list_images(hr_dir, recursive=False) if hr_dir is not None else images
    if not hr_paths:
        raise UserError(f"--dataset {name}={directory}: no images, no *_HR/*_LR pairs and no HR/LR folders.")
    return BenchmarkSet(name, [make_pair(p.stem, _read(p), scale) for p in hr_paths], "hr only", lr_made=True)
