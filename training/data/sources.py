"""Image sources, prepared once into a cache folder with a manifest of training and held-out images.

- celeba: CelebA `img_align_celeba`: sorted files, the first N, centre-cropped (never resized) to the crop size
  and persisted as PNG, the last 5 held out, as the article does (sections 4, 4.1).
- folder: any folder of images (DIV2K, your photos): files used as they are where TensorFlow can decode
  them, converted to PNG where not; random crops are cut at training time; the last 5 are held out.
- demo: real photographs that ship inside scikit-image, cut into 128×128 tiles; one tile of each of five
  photos is held out. Needs no download.
- photos: the whole photographs of `training.data.photos` (scikit-image's and matplotlib's), random crops cut at
  training time; whole photographs held out. Needs no download.

A bad file (empty, corrupt, not an image, too small, too large) is skipped and counted, never fatal. The
manifest is written last and the cache folder renamed into place, so an interrupted preparation is resumed,
never trusted half-done.
"""

import concurrent.futures
import dataclasses
import fcntl
import functools
import hashlib
import importlib.util
import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
from tqdm import tqdm

from core.cli import UserError
from training.data import photos
from training.data.images import (IMAGE_SUFFIXES, BadImage, ImageReport, center_crop, read_rgb,
                                  save_png)

HELD_OUT = 5
DEMO_TILE = 128
DEMO_PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png",
               "hubble_deep_field.jpg", "ihc.png", "retina.jpg")
_DEMO_MIN_STD = 8.0  # tiles flatter than this (the black corners of retina.jpg) teach nothing
_TF_DECODABLE = {"JPEG", "PNG", "BMP", "GIF"}
_MANIFEST = "manifest.json"
_VERSION = 2  # bump when the preparation changes, so old caches are not reused


@dataclasses.dataclass(frozen=True)
class Manifest:
    kind: str
    train: tuple[str, ...]
    test: tuple[str, ...]
    report: ImageReport
    # Side of every training image when they all share one square size (they may then be cached in memory).
    fixed_size: int | None

    def save(self, directory: Path) -> None:
        data = {"kind": self.kind, "fixed_size": self.fixed_size, "report": self.report.to_dict(),
                "train": [_relative(p, directory) for p in self.train],
                "test": [_relative(p, directory) for p in self.test]}
        (directory / _MANIFEST).write_text(json.dumps(data, indent=1))

    @classmethod
    def load(cls, directory: Path) -> "Manifest":
        data = json.loads((directory / _MANIFEST).read_text())
        resolve = lambda p: str(directory / p) if not os.path.isabs(p) else p  # noqa: E731
        return cls(data["kind"], tuple(map(resolve, data["train"])), tuple(map(resolve, data["test"])),
                   ImageReport.from_dict(data["report"]), data["fixed_size"])


def _relative(path: str, directory: Path) -> str:
    path = Path(path)
    return str(path.relative_to(directory)) if path.is_relative_to(directory) else str(path)


def detect_kind(data_dir: Path | None) -> str:
    if data_dir is None:
        return "demo"
    if data_dir.name == "img_align_celeba" or (data_dir / "000001.jpg").exists():
        return "celeba"
    return "folder"


def list_images(directory: Path, recursive: bool) -> list[Path]:
    pattern = directory.rglob("*") if recursive else directory.iterdir()
    return sorted(p for p in pattern if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def demo_photo_dir() -> Path:
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the demo data set needs scikit-image (pip install scikit-image), "
                        "or pass --data-dir with your own images.")
    return Path(spec.submodule_search_locations[0]) / "data"


def prepare(kind: str, data_dir: Path | None, cache_dir: Path, crop_size: int,
            limit: int | None = None, photo_sides: tuple[int, ...] = photos.TRAIN_SIDES) -> Manifest:
    """Prepare (or reuse) the cache for a source and return its manifest. `photo_sides`: the long sides the
    photos data set's training photographs are reduced to (one copy each)."""
    if kind == "demo":
        if crop_size > DEMO_TILE:
            raise UserError(f"the demo data set has {DEMO_TILE}×{DEMO_TILE} tiles; use --crop-size "
                            f"{DEMO_TILE} or less, or pass --data-dir with larger images.")
        files = [demo_photo_dir() / name for name in DEMO_PHOTOS]
        builder = _build_demo
    elif kind == "photos":
        train, missing_train = photos.available(photos.TRAINING_PHOTOS)
        held_out, missing_held_out = photos.available(photos.HELD_OUT_PHOTOS)
        if missing_train or missing_held_out:
            logging.getLogger(__name__).warning(photos.missing_note(missing_train + missing_held_out))
        if not train or not held_out:
            raise UserError("the photos data set needs scikit-image and matplotlib (pip install scikit-image "
                            "matplotlib), or pass --data-dir with your own images.")
        files = [photo.path() for photo in train + held_out]
        builder = functools.partial(_build_photos, train, held_out, sides=tuple(photo_sides))
    else:
        if data_dir is None or not data_dir.is_dir():
            raise UserError(f"data folder {data_dir} does not exist; pass --data-dir with a folder of images"
                            + (" (CelebA's img_align_celeba, unzipped)" if kind == "celeba" else "") + ".")
        files = list_images(data_dir, recursive=kind == "folder")[:limit]
        builder = _build_celeba if kind == "celeba" else _build_folder
    if len(files) < HELD_OUT + 1:
        raise UserError(f"{data_dir} has {len(files)} image files; at least {HELD_OUT + 1} are needed "
                        f"({HELD_OUT} are held out for testing).")
    sides = "" if kind != "photos" or tuple(photo_sides) == photos.TRAIN_SIDES else "-sides" + "-".join(
        map(str, photo_sides))
    target = cache_dir / f"{kind}-{crop_size}-{_fingerprint(files, crop_size)}{sides}"
    if (target / _MANIFEST).exists():
        return Manifest.load(target)
    cache_dir.mkdir(parents=True, exist_ok=True)
    # One preparer at a time (several workers of a run may share the cache): the others wait, then load.
    with open(cache_dir / f"{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / _MANIFEST).exists():
            partial = target.with_name(target.name + ".partial")
            partial.mkdir(parents=True, exist_ok=True)
            manifest = builder(files, partial, crop_size)
            manifest.save(partial)
            shutil.rmtree(target, ignore_errors=True)
            partial.rename(target)
    return Manifest.load(target)


def _fingerprint(files: list[Path], crop_size: int) -> str:
    digest = hashlib.sha256(f"v{_VERSION} {crop_size}".encode())
    for f in files:
        stat = f.stat()
        digest.update(f"{f.resolve()} {stat.st_size} {stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:12]


def _map_files(function, files: list[Path], description: str):
    """`function(path)` over the files on a thread pool (PIL decodes without the GIL), in order, with a bar."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        yield from tqdm(pool.map(function, files), total=len(files), desc=description, unit="img",
                        leave=False, mininterval=1.0)


def _save_once(rgb: np.ndarray, path: Path) -> str:
    # Written under a temporary name and renamed, so a file that exists is complete: a resumed preparation
    # skips it.
    if not path.exists():
        tmp = path.with_suffix(".tmp.png")
        save_png(rgb, tmp)
        os.replace(tmp, path)
    return str(path)


def _crop_to_cache(out_dir: Path, crop_size: int):
    def crop(path: Path):
        target = out_dir / "crops" / f"{path.stem}.png"
        if target.exists():
            return str(target), False, None
        try:
            rgb, converted = read_rgb(path, min_size=crop_size)
        except BadImage as bad:
            return None, False, bad.reason
        return _save_once(center_crop(rgb, crop_size), target), converted, None
    return crop


def _collect(results, files: list[Path], report: ImageReport) -> list[str]:
    kept = []
    for path, (stored, converted, reason) in zip(files, results):
        if reason is not None:
            report.skip(path, reason)
            continue
        report.used += 1
        report.converted += converted
        kept.append(stored)
    return kept


def _build_celeba(files: list[Path], out_dir: Path, crop_size: int) -> Manifest:
    report = ImageReport()
    crops = _collect(_map_files(_crop_to_cache(out_dir, crop_size), files, "centre-cropping CelebA"),
                     files, report)
    _require_enough(crops, report)
    return Manifest("celeba", tuple(crops[:-HELD_OUT]), tuple(crops[-HELD_OUT:]), report, crop_size)


def _build_folder(files: list[Path], out_dir: Path, crop_size: int) -> Manifest:
    report = ImageReport()

    def check(path: Path):
        try:
            rgb, converted = read_rgb(path, min_size=crop_size)
        except BadImage as bad:
            return None, False, bad.reason
        from PIL import Image
        with Image.open(path) as image:
            decodable = image.format in _TF_DECODABLE and not converted
        # TensorFlow decodes the original where it can; anything else is stored once as RGB PNG.
        stored = str(path) if decodable else _save_once(rgb, out_dir / "converted" / f"{_safe_name(path)}.png")
        return stored, converted, None

    images = _collect(_map_files(check, files, "checking images"), files, report)
    _require_enough(images, report)
    test = []
    for i, stored in enumerate(images[-HELD_OUT:]):
        rgb, _ = read_rgb(Path(stored))
        test.append(_save_once(center_crop(rgb, crop_size), out_dir / "test" / f"{i:02d}.png"))
    return Manifest("folder", tuple(images[:-HELD_OUT]), tuple(test), report, None)


def _safe_name(path: Path) -> str:
    return hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10] + "-" + path.stem


def _read_counted(path: Path, min_size: int, report: ImageReport) -> np.ndarray | None:
    """The image, counted in the report as used (and converted); None, counted as skipped, if unusable."""
    try:
        rgb, converted = read_rgb(path, min_size=min_size)
    except BadImage as bad:
        report.skip(path, bad.reason)
        return None
    report.used += 1
    report.converted += converted
    return rgb


def _build_demo(files: list[Path], out_dir: Path, crop_size: int) -> Manifest:
    report = ImageReport()
    train, test = [], []
    for photo_index, path in enumerate(files):
        rgb = _read_counted(path, DEMO_TILE, report)
        if rgb is None:
            continue
        rows, cols = rgb.shape[0] // DEMO_TILE, rgb.shape[1] // DEMO_TILE
        held_out = (rows // 2, cols // 2) if photo_index < HELD_OUT else None
        for r in range(rows):
            for c in range(cols):
                tile = rgb[r * DEMO_TILE:(r + 1) * DEMO_TILE, c * DEMO_TILE:(c + 1) * DEMO_TILE]
                name = f"{path.stem}_r{r}c{c}.png"
                if (r, c) == held_out:
                    test.append(_save_once(tile, out_dir / "test" / name))
                elif tile.std() >= _DEMO_MIN_STD:
                    train.append(_save_once(tile, out_dir / "train" / name))
    if len(test) < HELD_OUT or not train:
        raise UserError(f"the demo photographs in {demo_photo_dir()} are incomplete ({report.summary()}); "
                        "reinstall scikit-image or pass --data-dir with your own images.")
    return Manifest("demo", tuple(train), tuple(test), report, DEMO_TILE)


def _build_photos(train: list, held_out: list, files: list[Path], out_dir: Path, crop_size: int,
                  sides: tuple[int, ...] = photos.TRAIN_SIDES) -> Manifest:
    """Every photograph stored once as RGB PNG (grey ones too, so tf.data decodes them all the same way): each
    training photograph at every one of `sides` it exceeds (and once as it is when smaller), each held-out one
    reduced to `photos.HELD_OUT_SIDE`."""
    report = ImageReport()

    def store(photo, role: str) -> list[str]:
        rgb = _read_counted(photo.path(), crop_size, report)
        if rgb is None:
            return []
        if role == "held-out":
            return [_save_once(photos.reduce(rgb, photos.HELD_OUT_SIDE), out_dir / role / f"{photo.name}.png")]
        kept = []
        for side in [side for side in sides if max(rgb.shape[:2]) > side] or [max(rgb.shape[:2])]:
            reduced = photos.reduce(rgb, side)
            if min(reduced.shape[:2]) >= crop_size:
                kept.append(_save_once(reduced, out_dir / role / f"{photo.name}-{side}.png"))
        return kept

    stored_train = [path for photo in tqdm(train, desc="reducing photographs", unit="img", leave=False)
                    for path in store(photo, "train")]
    stored_held_out = [path for photo in held_out for path in store(photo, "held-out")]
    if report.skipped:
        raise UserError(f"some installed photographs cannot be read ({report.summary()}); reinstall their "
                        "packages or pass --data-dir with your own images.")
    return Manifest("photos", tuple(stored_train), tuple(stored_held_out), report, None)


def _require_enough(images: list[str], report: ImageReport) -> None:
    if len(images) < HELD_OUT + 1:
        raise UserError(f"only {len(images)} usable images ({report.summary()}); at least {HELD_OUT + 1} "
                        "are needed.")
