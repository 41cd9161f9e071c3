"""Photographs that ship inside installed packages: the `photos` data set, needing no download.

Each entry names its package, its file, where the picture comes from and its licence, as the package's own
documentation states them. Whole photographs are held out, never tiles of a training photograph, so the
held-out scores measure pictures the model has not seen. Debian's desktop backgrounds are kept for
independent evaluation and never appear here.
"""

import dataclasses
import importlib.util
from pathlib import Path

from core.cli import UserError


@dataclasses.dataclass(frozen=True)
class Photo:
    package: str  # the installed package whose folder holds the file
    folder: str  # inside that package
    file: str
    source: str
    licence: str

    @property
    def name(self) -> str:
        return Path(self.file).stem

    def path(self) -> Path:
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            raise UserError(f"the photos data set needs the {self.package} package (pip install "
                            f"{_PIP_NAMES.get(self.package, self.package)}), or pass --data-dir with your "
                            "own images.")
        return Path(spec.submodule_search_locations[0]) / self.folder / self.file


_PIP_NAMES = {"skimage": "scikit-image"}
_SKIMAGE = ("skimage", "data")
_MATPLOTLIB = ("matplotlib", "mpl-data/sample_data")

TRAINING_PHOTOS = (
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
)

HELD_OUT_PHOTOS = (
    Photo(*_SKIMAGE, "chelsea.png", "Stefan van der Walt, the cat Chelsea", "CC0"),
    Photo(*_SKIMAGE, "coffee.png", "Rachel Michetti, a cup of coffee", "CC0"),
    Photo(*_MATPLOTLIB, "grace_hopper.jpg", "US Navy, portrait of Grace Hopper", "public domain"),
)


def catalogue() -> list[dict]:
    """The data list as it is recorded beside a trained model."""
    return [{"role": role, **dataclasses.asdict(photo)}
            for role, photos in (("train", TRAINING_PHOTOS), ("held-out", HELD_OUT_PHOTOS))
            for photo in photos]
