"""export.json: what the export recorded about a version, in one dataclass.

Written by `export.to_onnx`; read by the server (tiling, admission), `serving.upscale` and the benchmarks.
A version without the file (exported by another tool) reads as the article's generator, untiled.
"""

import dataclasses
import json
from pathlib import Path

from core.model_spec import DEFAULT_TILE, ModelSpec
from core.repository import EXPORT_RECORD


@dataclasses.dataclass(frozen=True)
class ExportRecord:
    model_spec: ModelSpec = ModelSpec()
    version: int | None = None
    step: int | None = None  # the training step of the weights
    source_checkpoint: str | None = None
    opset: int | None = None
    # How the SavedModel tiles in its graph ({"tile", "overlap", "scale", "window"}); None: the whole input.
    saved_model_tiling: dict | None = None
    exported_at: str | None = None
    files: tuple[str, ...] = ()
    versions: dict = dataclasses.field(default_factory=dict)  # of the tools that wrote it
    parity_passed: bool | None = None
    int8: dict | None = None  # export/int8.py's report, when --int8 was asked for
    # What the model is for, as the gate judged it: "distortion" (PSNR-oriented) or "perception" (a GAN).
    objective: str = "distortion"
    # ESRGAN's network interpolation, when the weights were blended: {"alpha", "psnr_weights", "gan_weights"}.
    interpolation: dict | None = None

    @property
    def tile(self) -> int:
        """Input pixels per tile side: the SavedModel's own, so every backend tiles alike; else the default."""
        return self.saved_model_tiling["tile"] if self.saved_model_tiling else DEFAULT_TILE

    def window_plan(self) -> tuple[int, int, int]:
        """(scale, tile, overlap) a backend tiles this version with; the overlap is the receptive radius."""
        return self.model_spec.scale, self.tile, self.model_spec.receptive_radius

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "files": list(self.files)}

    def save(self, version_dir: Path) -> Path:
        path = Path(version_dir) / EXPORT_RECORD
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, version_dir: Path | None) -> "ExportRecord":
        """The version's record; the article's generator, untiled, where there is none (or no local version:
        a client of a remote server)."""
        path = None if version_dir is None else Path(version_dir) / EXPORT_RECORD
        if path is None or not path.is_file():
            return cls()
        data = json.loads(path.read_text())
        known = {f.name for f in dataclasses.fields(cls)}
        fields = {k: v for k, v in data.items() if k in known}
        fields["model_spec"] = ModelSpec.from_dict(data.get("model_spec") or {})
        fields["files"] = tuple(data.get("files") or ())
        return cls(**fields)
