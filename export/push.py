"""`python -m export.push`: promote a blessed version from one model repository to another (TFX's Pusher).

    python -m export.push models/srgan/3 /srv/models                      # copy version 3 (blessed) there
    python -m export.push models/srgan gs://bucket/models --label canary --model-config gs://bucket/models.config
    python -m export.push models/srgan/3 gs://bucket/models --promote --model-config gs://bucket/models.config

SOURCE is a version folder, or a model folder (its newest blessed version); DESTINATION is a repository base on
any file system TensorFlow writes (`tf.io.gfile`: local, `gs://`, others where installed): the version goes to
`DESTINATION/<model>/<version>`. A version without a blessing (not judged, refused, or exported with --no-bless)
is refused, exit status 3. On a local disk the copy is built under a hidden name and renamed (a server polling the
folder sees nothing or all of it); object stores have no rename, so the files are written in place with
`saved_model.pb` last: a server that lists the version before it is complete fails that load and retries it
(TF Serving: --max_num_load_retries, 5 by default, a minute apart). Pushing a version that is already there
with the same export record copies nothing, so a rollback is only a label change; if that copy was cut short
(a file missing or of another size), the missing files are written, `saved_model.pb` again last. Model names and
labels are plain words (a name is one folder inside DESTINATION; a label appears in REST paths).

With --model-config, the model's entry in TF Serving's models.config (a ModelServerConfig text proto) is updated:
--label NAME points NAME at the version, --promote points `stable` at it (and drops the labels that pointed at
it, a canary that became stable); the version policy becomes `specific` with the labelled versions, so a fleet
that polls the file (--model_config_file_poll_wait_seconds) loads the new version and unloads the one no label
names. Exit status: 0 pushed; 2 bad input; 3 not blessed.
"""

import dataclasses
import os
import re
import sys
import uuid
from pathlib import Path

from core.cli import UserError, exit_on_user_error, parser, setup_logging
from core.repository import EXPORT_RECORD, SAVED_MODEL, parse_version, version_dirs
from export.bless import is_blessed, newest_blessed
from export.repository import check_model_name

STABLE = "stable"
_LABEL = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
LOADED_LAST = SAVED_MODEL  # what a server opens first: written last where there is no atomic rename


@dataclasses.dataclass(frozen=True)
class PushConfig:
    source: Path
    destination: str  # a path or a URL tf.io.gfile understands
    model_name: str | None = None  # default: the source's model folder name
    labels: tuple[str, ...] = ()
    promote: bool = False
    model_config: str | None = None  # TF Serving's models.config to update with the labels
    config_base_path: str | None = None  # the model's base_path as the servers see it; default: where it is pushed


def parse_args(argv=None) -> PushConfig:
    p = parser("python -m export.push", __doc__)
    p.add_argument("source", type=Path, help="a version folder, or a model folder (its newest blessed version)")
    p.add_argument("destination", help="a repository base: the version goes to DESTINATION/<model>/<version>")
    p.add_argument("--model-name", help="the model's folder name at the destination (default: the source's)")
    p.add_argument("--label", dest="labels", action="append", default=[], metavar="NAME",
                   help="point this version label at the pushed version (repeatable; needs --model-config)")
    p.add_argument("--promote", action="store_true",
                   help=f"point '{STABLE}' at the pushed version (needs --model-config); a rollback is --promote of "
                        "the version before")
    p.add_argument("--model-config", help="TF Serving's models.config to update (created when missing)")
    p.add_argument("--config-base-path",
                   help="the model's base_path written into models.config, as the servers see it (default: "
                        "DESTINATION/<model>)")
    args = vars(p.parse_args(argv))
    args["labels"] = tuple(args["labels"])
    return PushConfig(**args)


def _check_label(label: str) -> str:
    """A version label is a plain word: it appears in REST paths (/labels/<label>) and in models.config."""
    if not _LABEL.fullmatch(label):
        raise UserError(f"--label {label!r} must be a plain word (letters, digits, '_', '-', '.'; not starting with "
                        "'.' or '-'), as TF Serving's REST paths carry it.")
    return label


class NotBlessed(UserError):
    exit_status = 3


def _is_local(path: str) -> bool:
    return "://" not in path


def _join(*parts: str) -> str:
    return "/".join(part.rstrip("/") for part in parts)


def source_version(source: Path) -> Path:
    """The version to push: the folder given, or the newest blessed version of a model folder."""
    if parse_version(source.name) is not None and source.is_dir():
        return source
    if not source.is_dir():
        raise UserError(f"{source} is not a folder; pass a version folder (models/srgan/3) or a model folder.")
    found = newest_blessed(source)
    if found is None:
        present = sorted(version_dirs(source))
        raise NotBlessed(f"{source} has no blessed version (versions: {present or 'none'}); export one through the "
                         "deployment gate (python -m export.to_onnx without --no-bless).")
    return found[1]


def _files(version_dir: Path) -> list[Path]:
    """Every file of the version, relative, with the one a server opens first at the end."""
    files = sorted(p.relative_to(version_dir) for p in version_dir.rglob("*") if p.is_file())
    return sorted(files, key=lambda p: str(p) == LOADED_LAST)


def _same_export(version_dir: Path, remote: str) -> bool:
    import tensorflow as tf
    other = _join(remote, EXPORT_RECORD)
    ours = (version_dir / EXPORT_RECORD).read_bytes()
    return tf.io.gfile.exists(other) and tf.io.gfile.GFile(other, "rb").read() == ours


def _missing_files(version_dir: Path, remote: str) -> list[Path]:
    """The version's files that are absent at `remote` or of another size there (an interrupted copy)."""
    import tensorflow as tf
    missing = []
    for relative in _files(version_dir):
        other = _join(remote, relative.as_posix())
        if not tf.io.gfile.exists(other) or tf.io.gfile.stat(other).length != (version_dir / relative).stat().st_size:
            missing.append(relative)
    return missing


def _copy_files(version_dir: Path, target: str, files: list[Path]) -> None:
    import tensorflow as tf
    for folder in sorted(p.relative_to(version_dir) for p in version_dir.rglob("*") if p.is_dir()):
        tf.io.gfile.makedirs(_join(target, folder.as_posix()))  # empty ones too (a SavedModel's assets/)
    for relative in sorted(files, key=lambda p: str(p) == LOADED_LAST):
        tf.io.gfile.copy(str(version_dir / relative), _join(target, relative.as_posix()), overwrite=True)


def push_version(version_dir: Path, model_dir: str, version: int) -> tuple[str, bool]:
    """Copy a version to `model_dir/<version>`; (its path, whether anything was copied). A copy of the same export
    that was cut short (an object store has no rename: files written in place, `saved_model.pb` last) is
    completed, the server-opened file again last."""
    import tensorflow as tf
    target = _join(model_dir, str(version))
    if tf.io.gfile.exists(target):
        if not _same_export(version_dir, target):
            raise UserError(f"{target} exists and holds another export; push to another repository, or remove it "
                            "there first.")
        missing = _missing_files(version_dir, target)
        if missing:
            _copy_files(version_dir, target, missing)
        return target, bool(missing)
    tf.io.gfile.makedirs(model_dir)
    local = _is_local(model_dir)
    building = _join(model_dir, f".push-{os.getpid()}-{uuid.uuid4().hex[:8]}") if local else target
    try:
        tf.io.gfile.makedirs(building)
        _copy_files(version_dir, building, _files(version_dir))
        if local:
            os.rename(building, target)  # atomic on one file system; fails if the version appeared meanwhile
    except BaseException:
        if local and tf.io.gfile.exists(building):
            tf.io.gfile.rmtree(building)
        raise
    return target, True


def updated_config(text: str, model_name: str, base_path: str, version: int, labels: tuple[str, ...],
                   promote: bool) -> str:
    """models.config with the model's labels moved and its version policy set to the labelled versions."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2
    config = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as error:
        raise UserError(f"the model config is not a ModelServerConfig text proto ({error}).") from None
    entries = config.model_config_list.config
    entry = next((c for c in entries if c.name == model_name), None)
    if entry is None:
        entry = entries.add(name=model_name, base_path=base_path, model_platform="tensorflow")
    if not promote and STABLE not in entry.version_labels:
        # The policy becomes `specific` with the labelled versions: the one serving now would be unloaded.
        raise UserError(f"{model_name} has no '{STABLE}' label yet: point it at the version in service first "
                        "(export.push <that version> … --promote), then label the new one.")
    if promote:
        for label in [k for k, v in entry.version_labels.items() if v == version]:
            del entry.version_labels[label]
        entry.version_labels[STABLE] = version
    for label in labels:
        entry.version_labels[label] = version
    served = sorted(set(entry.version_labels.values()) | {version})
    entry.model_version_policy.specific.versions[:] = served
    return text_format.MessageToString(config)


def _write_atomically(path: str, text: str) -> None:
    import tensorflow as tf
    if _is_local(path):
        temporary = Path(path).with_name(f".{Path(path).name}.{os.getpid()}")
        temporary.write_text(text)
        os.replace(temporary, path)
    else:  # one object: replaced whole on object stores
        with tf.io.gfile.GFile(path, "w") as file:
            file.write(text)


@exit_on_user_error
def push(config: PushConfig) -> dict:
    import tensorflow as tf
    if (config.labels or config.promote) and not config.model_config:
        raise UserError("--label and --promote change TF Serving's models.config: pass --model-config PATH.")
    version_dir = source_version(config.source)
    if not is_blessed(version_dir):
        raise NotBlessed(f"{version_dir} is not blessed (its blessing.json: "
                         f"{'missing' if not (version_dir / 'blessing.json').exists() else 'not blessed'}); only "
                         "versions that passed the deployment gate are pushed.")
    version = parse_version(version_dir.name)
    model_name = check_model_name(config.model_name or version_dir.resolve().parent.name)
    for label in config.labels:
        _check_label(label)
    if tf.io.gfile.exists(config.destination) and not tf.io.gfile.isdir(config.destination):
        raise UserError(f"{config.destination} is a file; pass a repository folder (the version goes to "
                        f"DESTINATION/{model_name}/{version}).")
    model_dir = _join(config.destination, model_name)
    new_config = None
    if config.model_config:  # worked out before any copy: a refused label change must not leave a new version
        base_path = config.config_base_path or (str(Path(model_dir).resolve()) if _is_local(model_dir) else model_dir)
        current = (tf.io.gfile.GFile(config.model_config).read() if tf.io.gfile.exists(config.model_config) else "")
        new_config = updated_config(current, model_name, base_path, version, config.labels, config.promote)
    target, copied = push_version(version_dir, model_dir, version)
    result = {"version": version, "target": target, "copied": copied}
    if new_config is not None:
        _write_atomically(config.model_config, new_config)
        result["model_config"] = config.model_config
    return result


def main(argv=None) -> int:
    setup_logging()
    config = parse_args(argv)
    result = push(config)
    what = "copied to" if result["copied"] else "already in"
    print(f"version {result['version']} {what} {result['target']}")
    if "model_config" in result:
        labels = [*config.labels, *([STABLE] if config.promote else [])]
        print(f"{result['model_config']}: {', '.join(labels) or 'no label'} → version {result['version']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
