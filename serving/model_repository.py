"""TF Serving's model repository layout: `<base>/<model_name>/<version>/`, version a positive integer.

Anything else in a model directory (a half-written export's hidden temporary folder, notes) is not a
version, exactly as TF Serving's file-system source sees it.
"""

from pathlib import Path


def versions(model_path: Path) -> list[int]:
    """The version numbers present under a model directory, ascending."""
    model_path = Path(model_path)
    if not model_path.is_dir():
        return []
    return sorted(int(p.name) for p in model_path.iterdir()
                  if p.is_dir() and p.name.isdigit() and int(p.name) > 0)


def resolve_version_dir(path: Path) -> Path:
    """A version directory as given, or the newest version under a model directory.

    Raises FileNotFoundError when there is none.
    """
    path = Path(path)
    if path.name.isdigit() and path.is_dir():
        return path
    found = versions(path)
    if not found:
        raise FileNotFoundError(f"no model version under {path} (expected {path}/<version>/)")
    return path / str(found[-1])
