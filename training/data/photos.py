"""The `photos` data set: photographs that ship inside installed packages, needing no download.

Each entry names its package, its file, where the picture comes from and its licence, as the package's own
documentation states them (a Debian package's /usr/share/doc/<package>/copyright, a Plasma wallpaper's
metadata). Two kinds of package:

- pip packages (scikit-image, matplotlib): always installed with the toolkit;
- Debian packages of desktop wallpapers (`sudo apt-get install` + `DEBIAN_PACKAGES`): photographs of sky,
  water, foliage, flowers, animals, rooms and night, and a few strongly saturated renders. Where they are
  missing the recipe runs on the rest and says so at its start.

Whole photographs are held out, never parts of a training photograph, and they were chosen before any
training. `mate-backgrounds` is reserved for independent evaluation: nothing from it appears here (a test
checks it).

Large wallpapers are reduced (antialiased) before use: training photographs to at most `TRAIN_SIDES`
pixels on their long side, one copy per side, so a 96×96 crop holds a scene's detail at more than one
scale; held-out photographs to `HELD_OUT_SIDE`, so scoring a whole photograph takes a second, not a minute.
"""

import dataclasses
import importlib.util
from pathlib import Path

import numpy as np
from PIL import Image

TRAIN_SIDES = (1600, 800)
HELD_OUT_SIDE = 800
RESERVED_PACKAGE = "mate-backgrounds"  # independent evaluation only


class MissingPhoto(Exception):
    """The package that holds a photograph is not installed."""


@dataclasses.dataclass(frozen=True)
class Photo:
    package: str  # the pip package (its import name) or the Debian package that holds the file
    folder: str  # inside the pip package, or an absolute folder for a Debian package
    file: str
    source: str
    licence: str

    @property
    def name(self) -> str:
        if "/wallpapers/" in self.folder:  # Plasma: <wallpaper>/contents/images/<size>.jpg
            return Path(self.folder).parent.parent.name
        return Path(self.file).stem.split("_by_")[0]

    @property
    def debian(self) -> bool:
        return self.folder.startswith("/")

    def path(self) -> Path:
        """The file; `MissingPhoto` naming the install command when its package is absent."""
        if self.debian:
            path = Path(self.folder) / self.file
            if not path.is_file():
                raise MissingPhoto(f"{path} is missing (sudo apt-get install {self.package})")
            return path
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            raise MissingPhoto(f"the {self.package} package is missing (pip install "
                               f"{_PIP_NAMES.get(self.package, self.package)})")
        return Path(spec.submodule_search_locations[0]) / self.folder / self.file

    def available(self) -> bool:
        try:
            return self.path().is_file()
        except MissingPhoto:
            return False


def read(photo: Photo, max_side: int = HELD_OUT_SIDE, min_size: int = 0) -> np.ndarray:
    """The photograph as uint8 H×W×3, reduced to `max_side` (`training.data.images.read_rgb`, `reduce`)."""
    from training.data.images import read_rgb
    return reduce(read_rgb(photo.path(), min_size=min_size)[0], max_side)


def reduce(rgb: np.ndarray, max_side: int) -> np.ndarray:
    """The photograph with its long side at most `max_side` (Lanczos, antialiased), else as it is."""
    h, w = rgb.shape[:2]
    if max(h, w) <= max_side:
        return rgb
    k = max_side / max(h, w)
    size = (max(1, round(w * k)), max(1, round(h * k)))
    return np.asarray(Image.fromarray(rgb).resize(size, Image.LANCZOS, reducing_gap=3.0))


_PIP_NAMES = {"skimage": "scikit-image"}
_SKIMAGE = ("skimage", "data")
_MATPLOTLIB = ("matplotlib", "mpl-data/sample_data")
_PLASMA = "plasma-workspace-wallpapers"
_LOMIRI_16 = ("lomiri-wallpapers-16.04", "/usr/share/backgrounds")
_LOMIRI_20 = ("lomiri-wallpapers-20.04", "/usr/share/backgrounds")
_UKUI = ("ukui-wallpapers", "/usr/share/backgrounds")
_UKUI_LICENCE = "CC-BY-SA-3.0"


def _plasma(wallpaper: str, image: str, author: str, licence: str, what: str) -> Photo:
    return Photo(_PLASMA, f"/usr/share/wallpapers/{wallpaper}/contents/images", image,
                 f"KDE Plasma wallpaper {wallpaper} by {author}: {what}", licence)


def _ukui(file: str, what: str) -> Photo:
    return Photo(*_UKUI, file, f"Ubuntu Kylin community contributors: {what} (render)", _UKUI_LICENCE)


TRAINING_PHOTOS = (
    # scikit-image (pip)
    Photo(*_SKIMAGE, "astronaut.png", "NASA, astronaut Eileen Collins", "public domain"),
    Photo(*_SKIMAGE, "rocket.jpg", "SpaceX, Falcon 9 launch", "public domain"),
    Photo(*_SKIMAGE, "motorcycle_left.png", "Middlebury 2014 stereo benchmark (Scharstein et al.)",
          "not stated; research benchmark"),
    Photo(*_SKIMAGE, "motorcycle_right.png", "Middlebury 2014 stereo benchmark (Scharstein et al.)",
          "not stated; research benchmark"),
    Photo(*_SKIMAGE, "hubble_deep_field.jpg", "NASA, Hubble eXtreme Deep Field", "public domain"),
    Photo(*_SKIMAGE, "ihc.png", "Center for Microscopy And Molecular Imaging, IHC staining",
          "no known copyright restrictions"),
    Photo(*_SKIMAGE, "retina.jpg", "Mikael Häggström, fundus photograph", "CC0 1.0"),
    Photo(*_SKIMAGE, "camera.png", "Lav Varshney, photographer (grey)", "CC0"),
    Photo(*_SKIMAGE, "brick.png", "CC0Textures Bricks25 (grey)", "CC0"),
    Photo(*_SKIMAGE, "grass.png", "CC0Textures Grass (grey)", "CC0"),
    Photo(*_SKIMAGE, "gravel.png", "CC0Textures Gravel04 (grey)", "CC0"),
    Photo(*_SKIMAGE, "coins.png", "Greek coins, Brooklyn Museum collection (grey)",
          "no known copyright restrictions"),
    # KDE Plasma wallpapers (Debian plasma-workspace-wallpapers); licence from each wallpaper's metadata
    _plasma("Autumn", "2560x1600.jpg", "RJ Quiralta", "LGPL-3.0", "an autumn tree in a meadow"),
    _plasma("ColdRipple", "2560x1600.jpg", "Risto Saukonpää", "LGPL-3.0", "a jetty in fog"),
    _plasma("DarkestHour", "2560x1600.jpg", "Risto Saukonpää", "LGPL-3.0", "a lake at dusk"),
    _plasma("EveningGlow", "2560x1600.jpg", "Ian Hex", "LGPL-3.0", "rowing boats at sunset"),
    _plasma("FallenLeaf", "2560x1600.jpg", "Martin Klapetek", "LGPL-3.0", "a red leaf on the ground"),
    _plasma("Path", "2560x1600.jpg", "Risto Saukonpää", "LGPL-3.0", "a path through a green forest"),
    _plasma("Volna", "5120x2880.jpg", "Nikita Babin", "CC-BY-SA-4.0", "a wave on a sand beach"),
    _plasma("MilkyWay", "5120x2880.png", "ruvkr", "CC-BY-SA-4.0", "the night sky"),
    _plasma("Cascade", "3840x2160.png", "Ken Vermette", "LGPL-3.0", "saturated shapes (render)"),
    _plasma("Kokkini", "3840x2160.png", "Ken Vermette", "LGPL-3.0", "red and blue shapes (render)"),
    _plasma("Honeywave", "5120x2880.jpg", "Ken Vermette", "CC-BY-SA-4.0", "smooth pastel gradients (render)"),
    # Ubuntu Touch wallpapers (Debian lomiri-wallpapers-16.04/-20.04; licences from their copyright file)
    Photo(*_LOMIRI_16, "Bridge_by_Sander_Klootwijk.jpg", "Sander Klootwijk: a bridge's cables, sky and sea",
          "CC-BY-SA-4.0"),
    Photo(*_LOMIRI_16, "Dragonfly_by_Bolly.jpg", "Bolly: leaves against a blue sky", "CC-BY-SA-4.0"),
    Photo(*_LOMIRI_20, "Kleiber_by_Lukas_Baubkus.jpg", "Lukas Baubkus: a nuthatch on a tree trunk",
          "CC-BY-SA-4.0"),
    Photo(*_LOMIRI_16, "Picture_1A_by_freespace.jpg", "freespace: paint brushes in saturated colours",
          "CC-BY-SA-4.0"),
    Photo(*_LOMIRI_16, "aitzgorri_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi: mountains, autumn forest, meadow",
          "CC-BY-4.0"),
    Photo(*_LOMIRI_16, "analogpattern_by_Peter_Nerlich.jpg", "Peter Nerlich: a coloured film texture",
          "CC-BY-SA-4.0"),
    Photo(*_LOMIRI_16, "free_by_Peter_Nerlich.jpg", "Peter Nerlich: lamps and a toy bird", "CC-BY-SA-4.0"),
    Photo(*_LOMIRI_16, "greentock_by_Peter_Nerlich.jpg", "Peter Nerlich: a wall clock", "CC-BY-SA-4.0"),
    Photo(*_LOMIRI_16, "sunset_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi: sunset over a mountain top",
          "CC-BY-4.0"),
    Photo(*_LOMIRI_20, "Infinite-Sea_by_Aury88.jpg", "Aury88: the Milky Way over the sea (composite)",
          "CC-BY-SA-4.0"),
    # Ubuntu Kylin wallpapers (Debian ukui-wallpapers): saturated, smooth renders
    _ukui("calla.png", "a calla flower in pink and cyan"),
    _ukui("goldfish.png", "a magenta fish on violet"),
    _ukui("rhythm.jpg", "saturated ribbons"),
    _ukui("string.jpg", "blue and yellow strings"),
)

HELD_OUT_PHOTOS = (
    Photo(*_SKIMAGE, "chelsea.png", "Stefan van der Walt, the cat Chelsea", "CC0"),
    Photo(*_SKIMAGE, "coffee.png", "Rachel Michetti, a cup of coffee", "CC0"),
    _plasma("Kite", "1280x800.jpg", "Risto Saukonpää", "LGPL-3.0", "a kite in a blue sky"),
    _plasma("BytheWater", "1280x800.jpg", "Maciej Wiklo", "LGPL-3.0", "water and a pier at sunset"),
    _plasma("OneStandsOut", "1280x800.jpg", "Risto Saukonpää", "LGPL-3.0", "pine foliage"),
    _plasma("summer_1am", "1280x800.jpg", "Risto Saukonpää", "LGPL-3.0", "a lake under a night sky"),
    _plasma("ColorfulCups", "2560x1600.jpg", "Dmitri Popov", "LGPL-3.0", "saturated cups"),
    _plasma("Grey", "1280x800.jpg", "Sigi Sagi", "LGPL-3.0", "a building, black and white"),
    Photo(*_LOMIRI_16, "seeding_by_Clements_Engelhardt.jpg", "Clements Engelhardt: dandelions in a meadow",
          "CC-BY-SA-4.0"),
    Photo(*_LOMIRI_16, "friends_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi: two dogs at a wooden door",
          "CC-BY-4.0"),
    Photo(*_LOMIRI_16, "Picture_0B_by_freespace.jpg", "freespace: a fig on a red plate", "CC-BY-SA-4.0"),
    Photo(*_LOMIRI_16, "picosdeeuropa_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi: mountains and sky",
          "CC-BY-4.0"),
    Photo(*_LOMIRI_16, "life_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi: a stream in a forest", "CC-BY-4.0"),
    Photo(*_LOMIRI_16, "Wine_by_Jakkub_Mede.jpg", "Jakkub Mede: a room with a drum and wine", "CC-BY-SA-4.0"),
    # Last: workflows.demo sends it (a portrait, never trained on).
    Photo(*_MATPLOTLIB, "grace_hopper.jpg", "US Navy, portrait of Grace Hopper", "public domain"),
)

DEBIAN_PACKAGES = tuple(sorted({p.package for p in TRAINING_PHOTOS + HELD_OUT_PHOTOS if p.debian}))
INSTALL_COMMAND = "sudo apt-get install " + " ".join(DEBIAN_PACKAGES)


def available(photos: tuple[Photo, ...]) -> tuple[list[Photo], list[Photo]]:
    """(the photographs whose package is installed, the missing ones)."""
    present = [p for p in photos if p.available()]
    return present, [p for p in photos if p not in present]


def missing_note(missing: list[Photo]) -> str:
    """One line for the start of a run or an evaluation: what is missing and how to install it."""
    packages = sorted({p.package for p in missing})
    return (f"{len(missing)} photographs are not installed (packages {', '.join(packages)}); "
            f"running without them. To use them: {INSTALL_COMMAND}")


def catalogue() -> list[dict]:
    """The data list as it is recorded beside a trained model."""
    return [{"role": role, **dataclasses.asdict(photo)}
            for role, photos in (("train", TRAINING_PHOTOS), ("held-out", HELD_OUT_PHOTOS))
            for photo in photos]
