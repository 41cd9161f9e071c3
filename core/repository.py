"""TF Serving's model repository layout: `<base>/<model_name>/<version>/`, version a positive integer, and
the names of the files in a version folder.

Anything else in a model directory (a half-written export's hidden temporary folder, notes) is not a
version, exactly as TF Serving's file-system source sees it.
"""

import os
from pathlib import Path

# A version folder's files besides the SavedModel's own (saved_model.pb, variables/, assets.extra/).
ONNX_UINT8 = "model.onnx"  # the serving contract: uint8 in, uint8 out
ONNX_FLOAT = "model_float.onnx"  # float32 [-1, 1], the training model's interface (parity)
ONNX_FP16 = "model_fp16.onnx"  # export --fp16, for GPUs
ONNX_INT8 = "model_int8.onnx"  # export --int8, for CPUs with VNNI, kept when its quality holds
EXPORT_RECORD = "export.json"  # core.export_record.ExportRecord
PARITY_REPORT = "parity.json"  # export.parity's figures (parity.md: the same as tables)
SAVED_MODEL = "saved_model.pb"  # what a server opens first
WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"  # TF Serving's warm-up records
BLESSING = "blessing.json"  # export.bless's verdict: quality thresholds, baseline, infra validation
# Inside a model directory: versions the gate refused, kept for inspection. A hidden name is not a version to
# TF Serving's rule nor to ours, so no server ever loads what lies there.
REJECTED = ".rejected"

_SPACES = " \t\n\v\f\r"
MAX_VERSION = (1 << 63) - 1  # TF Serving parses version folder names as int64


def parse_version(name: str) -> int | None:
    """The version a folder name stands for, by TF Serving's rule, or None.

    TF Serving parses names with `strings::safe_strto64` (file_system_storage_path_source.cc): ASCII digits,
    an optional '-', surrounding whitespace, within int64; "01" is version 1, while "²", "٣" (digits to
    Python's `isdigit`, not to C) and 99999999999999999999 (beyond int64) are not versions. Our contract
    serves positive versions only, so 0 and negative numbers are ignored too.
    """
    text = name.strip(_SPACES)
    digits = text[1:] if text.startswith("-") else text
    if not digits or any(not "0" <= c <= "9" for c in digits):
        return None
    value = int(text)
    return value if 0 < value <= MAX_VERSION else None


def version_dirs(model_path: Path) -> dict[int, Path]:
    """version → folder under a model directory, ascending. When two names give one version ("1", "01"), the
    last in sorted order wins, as in TF Serving. Files are not versions. Raises OSError when the directory is
    missing or cannot be read (TF Serving: "Could not find base path …")."""
    model_path = Path(model_path)
    names = sorted(os.listdir(model_path))
    found = {}
    for name in names:
        version = parse_version(name)
        if version is not None and (model_path / name).is_dir():
            found[version] = model_path / name
    return dict(sorted(found.items()))


def versions(model_path: Path) -> list[int]:
    """The version numbers present under a model directory, ascending."""
    try:
        return list(version_dirs(model_path))
    except OSError:
        return []


def resolve_version_dir(path: Path) -> Path:
    """A version directory as given, or the newest version under a model directory.

    Raises FileNotFoundError when there is none.
    """
    path = Path(path)
    if parse_version(path.name) is not None and path.is_dir():
        return path
    found = version_dirs(path) if path.is_dir() else {}
    if not found:
        raise FileNotFoundError(f"no model version under {path} (expected {path}/<version>/)")
    return found[max(found)]
