"""The hyper-parameters that rebuild the networks: the JSON contract between training and export."""

import dataclasses
import json
import math
from pathlib import Path

SPEC_FILENAME = "model.json"


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

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    def save(self, directory: Path) -> Path:
        path = Path(directory) / SPEC_FILENAME
        path.write_text(self.to_json() + "\n")
        return path

    @classmethod
    def load(cls, directory: Path) -> "ModelSpec":
        data = json.loads((Path(directory) / SPEC_FILENAME).read_text())
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
