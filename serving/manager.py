"""Which versions of which models are loaded: TF Serving's version policy, labels, status and hot reload.

Every `file_system_poll_wait_seconds` the manager lists each model's base path. A new version wanted by the
policy (latest N by default) is loaded first and then made available; only after that is an old one
unloaded, so no request finds the model missing. Requests in flight keep a reference to the version they
resolved, so unloading never breaks them. A version that fails to load is reported (END with its error in
GetModelStatus) and the last good version keeps serving.
"""

import dataclasses
import logging
import os
import stat as stat_module
import threading
import time
from pathlib import Path

import grpc

from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.config import model_server_config_pb2

from core.repository import version_dirs
from serving.errors import ServingError, describe, echoed, invalid_argument, not_found
from serving.metrics import METRICS
from serving.servable import Servable, describe_batch_gain

log = logging.getLogger("serving.manager")

State = get_model_status_pb2.ModelVersionStatus.State


@dataclasses.dataclass
class VersionStatus:
    state: int
    error: str = ""


def model_config(name: str, base_path: Path) -> model_server_config_pb2.ModelConfig:
    # Absolute, but links kept: TF Serving lists the configured path on every poll, so re-pointing a linked base
    # path (a blue/green or git-sync swap) is seen at the next poll.
    return model_server_config_pb2.ModelConfig(name=name, base_path=str(Path(base_path).absolute()),
                                               model_platform="tensorflow")


class ServedModel:
    def __init__(self, config: model_server_config_pb2.ModelConfig, backend: str, gpu_mode: str = "graphs"):
        self.config = config
        self.backend = backend
        self.gpu_mode = gpu_mode  # the ONNX backend's, where a GPU runs it (serving.servable.OnnxRunner)
        self.available: dict[int, Servable] = {}
        self.statuses: dict[int, VersionStatus] = {}
        self._failed: dict[int, tuple] = {}  # version -> its folder's fingerprint when it failed (retried on change)
        self._lock = threading.Lock()
        # Loads run in a thread of their own, one at a time per model: a load that stalls (a hung file system)
        # holds this model's next load back, never the poller and so never the other models.
        self._loading: threading.Thread | None = None

    @property
    def name(self) -> str:
        return self.config.name

    def _wanted(self, on_disk: list[int]) -> list[int]:
        policy = self.config.model_version_policy
        loadable = [v for v in on_disk if v not in self._failed]
        choice = policy.WhichOneof("policy_choice")
        if choice == "all":
            return loadable
        if choice == "specific":
            return [v for v in policy.specific.versions if v in loadable]
        count = policy.latest.num_versions if choice == "latest" and policy.latest.num_versions else 1
        return loadable[-count:]

    def poll(self) -> None:
        """One look at the base path; raises OSError when it cannot be read. Versions to load are loaded in a
        thread of their own (`wait_for_loads` waits for it); while one runs, this model's poll only looks."""
        if self.loading:
            return
        base = Path(self.config.base_path)
        folders = {v: path for v, path in version_dirs(base).items() if self._inside_base(base, v, path)}
        on_disk = list(folders)
        for version, fingerprint in list(self._failed.items()):
            if version not in on_disk or _fingerprint(folders[version]) != fingerprint:
                del self._failed[version]  # changed or gone: worth another try later
        new = [v for v in self._wanted(on_disk) if v not in self.available]
        if not new:
            self._settle(on_disk)
            return
        self._loading = threading.Thread(target=self._load_then_settle, args=(new, folders),
                                         name=f"load-{self.name[:40]}", daemon=True)
        self._loading.start()

    @property
    def loading(self) -> bool:
        return self._loading is not None and self._loading.is_alive()

    def wait_for_loads(self, timeout: float | None = None) -> None:
        if self._loading is not None:
            self._loading.join(timeout)

    def _load_then_settle(self, versions: list[int], folders: dict) -> None:
        for version in versions:
            self._load(version, folders[version])
        self._settle(list(folders))

    def _settle(self, on_disk: list[int]) -> None:
        """Unload what the policy no longer wants, once what it wants instead is available."""
        wanted = set(self._wanted(on_disk))  # again: a failed load falls back to an older version
        for version in sorted(self.available):
            if version not in wanted and (wanted & set(self.available)):
                self._unload(version)

    def _inside_base(self, base: Path, version: int, folder: Path) -> bool:
        """A version folder that is a link leading out of the base path is never read."""
        if folder.resolve().is_relative_to(base.resolve()):
            return True
        if self.statuses.get(version, VersionStatus(State.UNKNOWN)).state != State.END:
            self.statuses[version] = VersionStatus(State.END, f"version {version} of {self.name} leads outside "
                                                   "its base path; not loaded")
        return False

    def _load(self, version: int, path: Path) -> None:
        self.statuses[version] = VersionStatus(State.LOADING)
        started = time.perf_counter()
        try:
            refusal = unsafe_entry(path, Path(self.config.base_path))
            if refusal:
                raise ValueError(f"not loaded: {refusal}")
            servable = Servable.load(self.name, version, path, self.backend, self.gpu_mode)
            METRICS.load(str(path), time.perf_counter() - started, ok=True)
        except Exception as error:  # any failure to load is reported, never fatal to the server
            METRICS.load(str(path), time.perf_counter() - started, ok=False)
            message = f"Failed to load version {version} of {self.name} from {path}: {error}"
            log.error("%s", message)
            self._failed[version] = _fingerprint(path)
            # Clients read the status: the server's own paths are not theirs to see.
            shown = message.replace(str(Path(self.config.base_path).resolve()), self.name).replace(
                str(Path(self.config.base_path)), self.name)
            self.statuses[version] = VersionStatus(State.END, shown[:2000])
            return
        with self._lock:
            self.available[version] = servable
        self.statuses[version] = VersionStatus(State.AVAILABLE)
        tuned = getattr(servable.runner, "cpu_settings", None)
        log.info("loaded %s version %d (%s%s) in %.1f s; %.2f µs per input pixel here (a 128×128 request: about "
                 "%.2f s); %s", self.name, version, self.backend,
                 f"; ONNX Runtime CPU settings timed here: {tuned}" if tuned else "", time.perf_counter() - started,
                 servable.seconds_per_pixel * 1e6, servable.seconds_per_pixel * 128 * 128,
                 describe_batch_gain(servable.batch_gain))

    def _unload(self, version: int) -> None:
        self.statuses[version] = VersionStatus(State.UNLOADING)
        with self._lock:
            self.available.pop(version, None)
        self.statuses[version] = VersionStatus(State.END)
        log.info("unloaded %s version %d", self.name, version)

    def unavailable_label(self, config: model_server_config_pb2.ModelConfig | None = None) -> ServingError | None:
        """TF Serving's refusal of a label that names a version not AVAILABLE (server_core.cc,
        UpdateModelVersionLabelMap), for this model's config or a proposed one; None when all are fine."""
        config = config or self.config
        for label, version in sorted(config.version_labels.items()):
            if version not in self.available:
                return ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                                    f"Request to assign label to version {version} of model {config.name}, which "
                                    "is not currently available for inference")
        return None

    def resolve(self, model_spec) -> Servable:
        """The servable a request's ModelSpec names: a version, a version label, or the newest."""
        with self._lock:
            if model_spec.HasField("version"):
                version = model_spec.version.value
                request = f"Specific({self.name}, {version})"
            elif model_spec.version_label:
                label = model_spec.version_label
                if label not in self.config.version_labels:  # server_core.cc: GetModelVersionForLabel
                    raise invalid_argument(f"Unrecognized servable version label: {echoed(label)}")
                version = self.config.version_labels[label]
                request = f"Specific({self.name}, {version}) (label {label})"
            else:
                version = max(self.available, default=None)
                request = f"Latest({self.name})"
            if version not in self.available:
                raise not_found(f"Servable not found for request: {request}")
            return self.available[version]


_MAX_ENTRIES = 10_000  # a version folder holds a few dozen files; more is not a model


def _fingerprint(path: Path) -> tuple:
    """What a version folder holds, every file's name, size and time: a failed version is retried when any of
    them changes (files copied into variables/ change no folder time above it)."""
    entries = []
    for root, dirs, files in os.walk(path):
        for name in sorted(dirs + files):
            try:
                stat = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            entries.append((os.path.relpath(os.path.join(root, name), path), stat.st_size, stat.st_mtime_ns))
            if len(entries) > _MAX_ENTRIES:
                return tuple(entries)
    return tuple(entries)


def unsafe_entry(folder: Path, base: Path) -> str | None:
    """Why a version folder must not be read, or None: every entry must be a regular file or a folder inside the
    base path; a link leading out of it, a FIFO (which would block the reader), a device (/dev/zero reads
    forever), a socket are refused before anything opens them."""
    base = base.resolve()
    count = 0
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            count += 1
            if count > _MAX_ENTRIES:
                return f"more than {_MAX_ENTRIES} entries"
            entry = Path(root) / name
            try:
                mode = entry.stat().st_mode  # through a link: what would really be read
            except OSError:
                return f"{entry.relative_to(folder)} cannot be read"
            if entry.is_symlink() and not entry.resolve().is_relative_to(base):
                return f"{entry.relative_to(folder)} links outside the base path"
            if not (stat_module.S_ISREG(mode) or stat_module.S_ISDIR(mode)):
                return f"{entry.relative_to(folder)} is not a regular file (a pipe, device or socket)"
    return None


def _poll_logged(model: ServedModel) -> bool:
    """One model's poll; False, logged, when its base path cannot be read: nothing on disk stops a poller."""
    try:
        model.poll()
        return True
    except Exception as error:  # noqa: BLE001 - the poller must survive anything on disk
        log.warning("cannot read the versions of %s in %s: %s", model.name, model.config.base_path, describe(error))
        return False


def check_unique_names(configs) -> None:
    """TF Serving's refusal of a config list that names a model twice (server_core.cc, ValidateModelConfigList)."""
    seen = set()
    for c in configs:
        if c.name in seen:
            raise invalid_argument(f"Illegal to list model {echoed(c.name)} multiple times in config list")
        seen.add(c.name)


class ModelManager:
    """The models a server serves, polled in a background thread."""

    def __init__(self, configs: list, backend: str = "savedmodel", poll_seconds: float = 1.0,
                 allow_unavailable_labels: bool = False, gpu_mode: str = "graphs"):
        self.backend = backend
        self.gpu_mode = gpu_mode
        self.allow_unavailable_labels = allow_unavailable_labels
        self.readable = True
        self.on_polled = None  # called after every poll (versions may have been loaded or unloaded)
        self.poll_seconds = poll_seconds
        self.models = {c.name: ServedModel(c, backend, gpu_mode) for c in configs}
        # A reload request may only name base paths inside the repositories the server was started on.
        self.roots = {Path(c.base_path).resolve().parent for c in configs}
        self._stop = threading.Event()
        self._poll_lock = threading.Lock()
        self._thread = None

    def poll(self) -> None:
        """Look at every model's base path. Nothing found there (an odd folder name, an unreadable
        directory, a version that fails to load) can stop the poller: errors are logged, and `readable` turns
        False (health NOT_SERVING) while a base path cannot be read."""
        with self._poll_lock:
            readable = all([_poll_logged(model) for model in list(self.models.values())])  # a list: poll every one
        self.readable = readable
        if self.on_polled:
            self.on_polled()

    def start(self) -> None:
        """The first poll, and its loads waited for (TF Serving, too, serves once the initial versions have
        loaded); then polling every poll_seconds."""
        self.poll()
        for model in list(self.models.values()):
            model.wait_for_loads()
        if self.on_polled:
            self.on_polled()  # now that the first versions are in
        if self.poll_seconds > 0:
            self._thread = threading.Thread(target=self._loop, name="model-poller", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            self.poll()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)

    def model(self, name: str) -> ServedModel:
        if not name:  # server_core.cc: ServableRequestFromModelSpec
            raise invalid_argument("ModelSpec has no name specified.")
        if name not in self.models:
            raise not_found(f"Servable not found for request: Latest({echoed(name)})")
        return self.models[name]

    def check_labels(self) -> None:
        """Raise TF Serving's FAILED_PRECONDITION when a label names a version that is not AVAILABLE."""
        for model in self.models.values():
            refusal = model.unavailable_label()
            if refusal:
                raise refusal

    def resolve(self, model_spec) -> Servable:
        return self.model(model_spec.name).resolve(model_spec)

    def reload(self, config: model_server_config_pb2.ModelServerConfig) -> None:
        """HandleReloadConfigRequest: serve exactly the models of the new config list. A model whose base path
        changes keeps answering from its old versions until the new path's versions have loaded."""
        check_unique_names(config.model_config_list.config)
        for c in config.model_config_list.config:
            path = Path(c.base_path).resolve()
            if not c.name or not any(path.is_relative_to(root) for root in self.roots):
                raise invalid_argument(f"model {c.name!r}: base_path {c.base_path} is outside the model "
                                       "repositories this server may read (those of its start-up configuration)")
        if not self.allow_unavailable_labels:
            for c in config.model_config_list.config:
                current = self.models.get(c.name)
                model = current if current is not None else ServedModel(c, self.backend, self.gpu_mode)
                refusal = model.unavailable_label(c) if c.version_labels else None
                if refusal:
                    raise refusal
        with self._poll_lock:
            replacements = {}
            for c in config.model_config_list.config:
                current = self.models.get(c.name)
                if current is None or current.config.base_path != c.base_path:
                    replacements[c.name] = ServedModel(c, self.backend, self.gpu_mode)
            for model in replacements.values():  # loaded before they replace anything (a new name: before it answers)
                if _poll_logged(model):
                    model.wait_for_loads()
            new = {}
            for c in config.model_config_list.config:
                if c.name in replacements:
                    new[c.name] = replacements[c.name]
                else:
                    current = self.models[c.name]
                    current.config = c  # same model: new policy and labels, loaded versions kept
                    new[c.name] = current
            self.models = new
        self.poll()
