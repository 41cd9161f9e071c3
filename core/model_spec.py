"""The model's facts: the hyper-parameters that rebuild the networks (the JSON contract between training and
export, recorded again in every exported version) and what follows from them for serving (the receptive
radius that tiling must cover, the default tile)."""

import dataclasses
import json
import math
from pathlib import Path

SPEC_FILENAME = "model.json"
DEFAULT_TILE = 128  # input pixels per tile side: windows of 128 + 2·40 = 208² for the article's generator


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Sizes of the generator and discriminator; the defaults are the article's."""

    scale: int = 4
    channels: int = 64
    residual_blocks: int = 16
    disc_channels: int = 64
    disc_dense: int = 1024
    # "patch": Dense layers on the 8×8 map, one logit per patch (the article); "flatten": one logit per image.
    disc_head: str = "patch"

    def __post_init__(self):
        if self.scale < 2 or 2 ** round(math.log2(self.scale)) != self.scale:
            raise ValueError(f"scale must be a power of two (2, 4, 8, …), got {self.scale}")
        if self.disc_head not in ("patch", "flatten"):
            raise ValueError(f"disc_head must be 'patch' or 'flatten', got {self.disc_head!r}")
        for name in ("channels", "residual_blocks", "disc_channels", "disc_dense"):
            if getattr(self, name) < (0 if name == "residual_blocks" else 1):
                raise ValueError(f"{name} must be {'0 or more' if name == 'residual_blocks' else 'positive'}, got "
                                 f"{getattr(self, name)}")

    @property
    def upsample_stages(self) -> int:
        return int(math.log2(self.scale))

    @property
    def receptive_radius(self) -> int:
        """Input pixels either side that reach one output pixel of the generator (40 for the article's).

        9×9 conv (4) + two 3×3 convs per residual block + the 3×3 conv after them, then per ×2 stage a 3×3 conv
        at that stage's resolution, and the final 9×9 conv at the output resolution.
        """
        radius = 4 + 2 * self.residual_blocks + 1
        radius += sum(1 / 2 ** i for i in range(self.upsample_stages)) + 4 / self.scale
        return math.ceil(radius)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    def save(self, directory: Path) -> Path:
        path = Path(directory) / SPEC_FILENAME
        path.write_text(self.to_json() + "\n")
        return path

    @classmethod
    def load(cls, directory: Path) -> "ModelSpec":
        return cls.from_dict(json.loads((Path(directory) / SPEC_FILENAME).read_text()))

    @classmethod
    def from_dict(cls, data: dict) -> "ModelSpec":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
