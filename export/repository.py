"""Writing one version of a model repository atomically.

The version is built in a hidden folder beside the versions (same filesystem) and renamed into place, so a
server polling the model directory sees no version or a complete one, never a half-written one. A version the
gate refuses is renamed into `<model>/.rejected/` instead, a folder no server reads. A staging
folder left by a killed export is removed by the next export. Exports of one model take turns (a lock file in
the model's folder), so two never pick the same version number nor replace each other's version.
"""

import contextlib
import dataclasses
import fcntl
import logging
import os
import re
import shutil
import uuid
from pathlib import Path

from core.cli import UserError
from core.repository import MAX_VERSION, REJECTED, versions

log = logging.getLogger(__name__)
_STAGING_PREFIX = ".staging-"
_LOCK = ".export.lock"  # not a version name: servers ignore it
_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def check_model_name(name: str) -> str:
    """A model name is one folder name inside the repository: never a path, never hidden."""
    if not _MODEL_NAME.fullmatch(name) or name.strip(".") == "":
        raise UserError(f"--model-name {name!r} must be a plain folder name (letters, digits, '_', '-', '.'; "
                        "not starting with '.'), so the model stays inside --repository.")
    return name


def next_version(model_path: Path) -> int:
    found = versions(model_path)
    return found[-1] + 1 if found else 1


def check_version(version: int) -> int:
    if not 1 <= version <= MAX_VERSION:
        raise UserError(f"--version must be a positive integer up to {MAX_VERSION} (TF Serving reads versions as "
                        f"int64), got {version}.")
    return version


@contextlib.contextmanager
def export_turn(model_path: Path):
    """Hold the model's export lock: a second export of the same model waits here until the first is done."""
    try:
        model_path.mkdir(parents=True, exist_ok=True)
        lock = open(model_path / _LOCK, "a")
    except OSError as error:
        raise UserError(f"cannot write to {model_path} ({error.strerror or error}): choose a writable "
                        "--repository.") from None
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("another export of %s is running; waiting for it to finish", model_path.name)
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_abandoned_staging(model_path: Path) -> list[Path]:
    """Delete staging folders whose export process is gone (killed mid-export)."""
    removed = []
    for path in Path(model_path).glob(f"{_STAGING_PREFIX}*"):
        pid = path.name[len(_STAGING_PREFIX):].split("-")[0]
        if pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


@dataclasses.dataclass
class Stage:
    """A version being written in `path`. `reject()` keeps it out of the served folder; once the block ends,
    `final` is where it lies: `<model>/<version>`, or `<model>/.rejected/<version>`."""
    path: Path
    rejected: bool = False
    final: Path | None = None

    def reject(self) -> None:
        self.rejected = True


def _rejected_place(model_path: Path, version: int) -> Path:
    """`.rejected/<version>`, or `.rejected/<version>-2`, -3 … when an earlier refused export took the name."""
    folder = model_path / REJECTED
    folder.mkdir(exist_ok=True)
    place, n = folder / str(version), 1
    while place.exists():
        n += 1
        place = folder / f"{version}-{n}"
    return place


@contextlib.contextmanager
def staged_version(model_path: Path, version: int, overwrite: bool):
    """Yield a Stage; on normal exit its folder becomes `<model_path>/<version>` (or goes to `.rejected/` when
    rejected), on error it is removed."""
    model_path = Path(model_path)
    target = model_path / str(version)
    if target.exists() and not overwrite:
        raise UserError(f"version {version} already exists in {model_path}; leave out --version to write the "
                        f"next one, or pass --overwrite to replace it.")
    try:
        model_path.mkdir(parents=True, exist_ok=True)
        remove_abandoned_staging(model_path)
        staging = model_path / f"{_STAGING_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
        staging.mkdir()
    except OSError as error:  # not writable, or a file where a folder should be
        raise UserError(f"cannot write to {model_path} ({error.strerror or error}): choose a writable "
                        "--repository.") from None
    stage = Stage(staging)
    try:
        yield stage
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if stage.rejected:
        stage.final = _rejected_place(model_path, version)
        staging.rename(stage.final)
        return
    if target.exists() and not overwrite:  # appeared meanwhile (by another tool): never replaced unasked
        shutil.rmtree(staging, ignore_errors=True)
        raise UserError(f"version {version} appeared in {model_path} during the export; run it again for the "
                        "next version.")
    if target.exists():  # --overwrite: move the old version aside first, then swap the new one in
        retired = model_path / f"{_STAGING_PREFIX}{os.getpid()}-retired-{version}"
        target.rename(retired)
        staging.rename(target)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        staging.rename(target)
    stage.final = target
