"""What the server reads from a model repository: regular files under the base path only, and a failed version
tried again when its files change."""

import os
import shutil
import time

import numpy as np

from serving.client import SrganClient
from tests.helpers import ServerProcess, copy_version, healthy, raw_predict


def _statuses(target) -> dict:
    from serving.client import SrganClient
    with SrganClient(target) as client:
        return {s["version"]: s for s in client.status()}


def _wait_for(target, version: int, state: str, seconds: float = 60) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        statuses = _statuses(target)
        if statuses.get(version, {}).get("state") == state:
            return statuses
        time.sleep(0.2)
    raise AssertionError(f"version {version} never became {state}: {_statuses(target)}")


def test_links_out_pipes_and_devices_in_a_version_are_never_opened(repository, exported):
    """saved_model.pb as a link to /dev/zero used to be read forever (+3 GB in 2 s); as a FIFO it stalled the
    poller, so no newer version ever loaded. Both are refused before anything opens them."""
    for version in (2, 3):
        shutil.copytree(exported[0], repository / f".copy-{version}")
    (repository / ".copy-2" / "saved_model.pb").unlink()
    (repository / ".copy-2" / "saved_model.pb").symlink_to("/dev/zero")
    (repository / ".copy-3" / "saved_model.pb").unlink()
    os.mkfifo(repository / ".copy-3" / "saved_model.pb")
    server = ServerProcess("--model_base_path", str(repository), "--file_system_poll_wait_seconds", "0.2")
    try:
        for version in (2, 3):
            (repository / f".copy-{version}").rename(repository / str(version))
        statuses = _wait_for(server.target, 3, "END")
        statuses = _wait_for(server.target, 2, "END")
        assert "links outside the base path" in statuses[2]["error"]
        assert "not a regular file" in statuses[3]["error"]
        assert str(repository) not in statuses[3]["error"]  # the server's paths are not shown to clients
        assert statuses[1]["state"] == "AVAILABLE"
        shutil.copytree(exported[0], repository / ".copy-4")
        (repository / ".copy-4").rename(repository / "4")
        _wait_for(server.target, 4, "AVAILABLE")  # the poller was never stuck
        answer = raw_predict(server.target, {"images": np.zeros((1, 4, 4, 3), np.uint8)})
        assert answer.model_spec.version.value == 4
    finally:
        assert server.stop() == 0


def test_a_failed_version_is_tried_again_when_its_files_change(repository, exported):
    """Copied without its variables, it fails; once they are copied into variables/ (which changes no time of
    the version folder itself) it loads."""
    staging = repository / ".copy-2"
    shutil.copytree(exported[0], staging)
    held_back = repository.parent / "variables-later"
    shutil.move(staging / "variables", held_back)
    (staging / "variables").mkdir()
    server = ServerProcess("--model_base_path", str(repository), "--file_system_poll_wait_seconds", "0.2")
    try:
        staging.rename(repository / "2")
        _wait_for(server.target, 2, "END")
        for item in held_back.iterdir():
            shutil.copy(item, repository / "2" / "variables" / item.name)
        _wait_for(server.target, 2, "AVAILABLE")
    finally:
        assert server.stop() == 0


def test_version_folder_names_follow_tf_servings_rule():
    from core.repository import parse_version
    # strings::safe_strto64, as file_system_storage_path_source.cc parses them; positive versions only.
    cases = {"1": 1, "01": 1, " 7 ": 7, "42": 42, str((1 << 63) - 1): (1 << 63) - 1, "99999999999999999999": None,
             "²": None, "٣": None, "1.5": None, "v2": None, "": None, "-3": None, "0": None, ".staging-1": None}
    assert {name: parse_version(name) for name in cases} == cases


def test_odd_names_in_the_repository_never_stop_the_poller(repository, exported, tmp_path):
    base = tmp_path / "srgan"
    base.mkdir()
    copy_version(exported[0], base, 1)
    server = ServerProcess("--model_base_path", str(base), "--file_system_poll_wait_seconds", "0.2")
    probe = {"images": np.zeros((1, 8, 8, 3), np.uint8)}
    try:
        for name in ("²", "٣", "99999999999999999999", "01"):
            shutil.copytree(exported[0], base / name)
        (base / "7").write_text("a file, not a version")
        time.sleep(1.0)  # several polls over the odd names
        assert raw_predict(server.target, probe).model_spec.version.value == 1
        with SrganClient(server.target) as client:
            assert [s["version"] for s in client.status()] == [1]
        assert healthy(server.target)
        copy_version(exported[0], base, 2)  # a later valid version still loads
        deadline = time.monotonic() + 60
        while raw_predict(server.target, probe).model_spec.version.value != 2:
            assert time.monotonic() < deadline, "version 2 was never served"
            time.sleep(0.2)
        # A repository that cannot be read: health says NOT_SERVING, the loaded version keeps answering.
        base.rename(tmp_path / "away")
        base.write_text("not a folder")
        deadline = time.monotonic() + 30
        while healthy(server.target):
            assert time.monotonic() < deadline, "health never turned NOT_SERVING"
            time.sleep(0.2)
        assert raw_predict(server.target, probe).model_spec.version.value == 2
        base.unlink()
        (tmp_path / "away").rename(base)
        deadline = time.monotonic() + 30
        while not healthy(server.target):
            assert time.monotonic() < deadline, "health never came back"
            time.sleep(0.2)
    finally:
        assert server.stop() == 0


def test_a_stalled_load_never_stops_the_poller_for_other_models(exported, tmp_path, monkeypatch):
    """A load that hangs (a hung network file system, which cannot be made here: its read is stood in for by a
    wait) holds back only its own model: the poller keeps looking, and another model's new version loads."""
    import threading

    from serving.manager import ModelManager, State, model_config
    from serving.servable import Servable
    stuck, fine = tmp_path / "models" / "stuck", tmp_path / "models" / "srgan"
    for base in (stuck, fine):
        base.mkdir(parents=True)
        copy_version(exported[0], base, 1)
    release = threading.Event()
    real_load = Servable.load.__func__

    def load(cls, name, version, path, *args, **kwargs):
        if name == "stuck" and version == 2:
            release.wait(120)  # the stalled read
        return real_load(cls, name, version, path, *args, **kwargs)
    monkeypatch.setattr(Servable, "load", classmethod(load))
    manager = ModelManager([model_config("stuck", stuck), model_config("srgan", fine)], poll_seconds=0.2)
    polls = []
    manager.on_polled = lambda: polls.append(time.monotonic())
    manager.start()
    try:
        assert sorted(manager.models["stuck"].available) == [1] and sorted(manager.models["srgan"].available) == [1]
        copy_version(exported[0], stuck, 2)  # its load stalls
        time.sleep(1.0)
        copy_version(exported[0], fine, 2)
        deadline = time.monotonic() + 60
        while 2 not in manager.models["srgan"].available and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sorted(manager.models["srgan"].available) == [2]  # loaded, and version 1 unloaded
        assert sorted(manager.models["stuck"].available) == [1]  # still serving while its load hangs
        assert manager.models["stuck"].statuses[2].state == State.LOADING
        count = len(polls)
        time.sleep(1.0)
        assert len(polls) >= count + 3  # the poller goes on
        release.set()
        manager.models["stuck"].wait_for_loads(60)
        assert sorted(manager.models["stuck"].available) == [2]
    finally:
        release.set()
        manager.stop()
