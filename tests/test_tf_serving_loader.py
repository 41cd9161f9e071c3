"""The SavedModel as tensorflow_model_server loads it: graph mode (restore op, then init op), every signature,
warm-up replayed before a version is served. The real binary cannot be installed here; saved_model_cli and
tf.compat.v1.saved_model.loader use the same loading path."""

import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from export import saved_model
from export.graphs import ServingModule
from export.run import ExportConfig, export
from serving.client import SrganClient
from serving.onnx_runtime import create_session
from serving.servable import SavedModelRunner
from tests.helpers import ServerProcess, raw_predict


class UntrackedModule(ServingModule):
    """The Keras 3 / tf.Module defect, on purpose: the backing variables are not tracked, so the restore op
    fills handles that the signatures never read (keras-team/keras#20095)."""

    def __init__(self, generator, tiling):
        super().__init__(generator, tiling)
        del self.backing_variables


@pytest.fixture(scope="module")
def broken_export(trained_run, tmp_path_factory):
    patch = pytest.MonkeyPatch()
    patch.setattr(saved_model, "ServingModule", UntrackedModule)
    try:
        return export(ExportConfig(run_dir=trained_run, repository=tmp_path_factory.mktemp("broken"), bless=False))
    finally:
        patch.undo()


def test_saved_model_cli_run_gives_the_onnx_runtime_answer(exported, tmp_path):
    version_dir, _ = exported
    images = np.random.default_rng(3).integers(0, 256, (2, 12, 9, 3), dtype=np.uint8)
    np.save(tmp_path / "x.npy", images)
    cli = Path(sys.executable).parent / "saved_model_cli"
    result = subprocess.run([str(cli), "run", "--dir", str(version_dir), "--tag_set", "serve", "--signature_def",
                             "serving_default", "--inputs", f"images={tmp_path / 'x.npy'}", "--outdir",
                             str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    sr = np.load(tmp_path / "out" / "sr_images.npy")
    reference = create_session(version_dir / "model.onnx").run(None, {"images": images})[0]
    assert sr.shape == (2, 48, 36, 3) and sr.dtype == np.uint8
    assert np.abs(sr.astype(int) - reference).max() <= 1


def test_every_signature_runs_through_the_graph_mode_loader(exported):
    version_dir, report = exported
    runner = SavedModelRunner(version_dir)
    images = np.random.default_rng(4).integers(0, 256, (1, 8, 10, 3), dtype=np.uint8)
    assert runner.run("serving_default", {"images": images})["sr_images"].shape == (1, 32, 40, 3)
    floats = runner.run("predict_float", {"lr": images.astype(np.float32) / 127.5 - 1})["sr"]
    assert floats.shape == (1, 32, 40, 3) and np.abs(floats).max() <= 1
    import io
    buffer = io.BytesIO()
    Image.fromarray(images[0]).save(buffer, format="PNG")
    png = runner.run("predict_encoded", {"image_bytes": np.array([buffer.getvalue()], dtype=object)})["sr_png_bytes"]
    assert Image.open(io.BytesIO(png[0])).size == (40, 32)
    pairs = {p["pair"]: p for p in report["float32"]["pairs"]}
    assert pairs["keras vs savedmodel-graph"]["passed"] and pairs["keras vs savedmodel-graph predict_encoded"]["passed"]


def test_large_inputs_are_tiled_inside_the_graph_with_the_whole_image_answer(exported):
    import json
    from serving.servable import OnnxRunner
    version_dir, _ = exported
    tiling = json.loads((version_dir / "export.json").read_text())["saved_model_tiling"]
    images = np.random.default_rng(5).integers(0, 256, (2, tiling["window"] + 37, 2 * tiling["window"] + 5, 3),
                                               dtype=np.uint8)
    floats = images.astype(np.float32) / 127.5 - 1
    whole = create_session(version_dir / "model.onnx").run(None, {"images": images})[0]  # ONNX: never tiled
    whole_float = create_session(version_dir / "model_float.onnx").run(None, {"lr": floats})[0]
    for runner in (SavedModelRunner(version_dir), OnnxRunner(version_dir)):  # the graph's tiles; the server's
        tiled = runner.run("serving_default", {"images": images})["sr_images"]
        assert tiled.shape == whole.shape
        diff = np.abs(tiled.astype(int) - whole)
        assert diff.max() <= 1 and (diff == 0).mean() >= 0.999, runner.backend
        assert np.abs(runner.run("predict_float", {"lr": floats})["sr"] - whole_float).max() <= 1e-4
    # A batch of small images goes through in chunks of at most one window of pixels: same answers.
    small = images[:, :20, :20].repeat(40, axis=0)
    chunked = SavedModelRunner(version_dir).run("serving_default", {"images": small})["sr_images"]
    reference = create_session(version_dir / "model.onnx").run(None, {"images": small})[0]
    assert np.abs(chunked.astype(int) - reference).max() <= 1


def test_a_broken_variable_restore_fails_the_export(broken_export):
    version_dir, report = broken_export
    assert not report["passed"]
    graph = {p["pair"]: p for p in report["float32"]["pairs"]}["keras vs savedmodel-graph"]
    assert not graph["passed"] and "Could not find variable" in graph["error"]
    assert {p["pair"]: p for p in report["float32"]["pairs"]}["keras vs savedmodel"]["passed"]  # eager hides it
    with pytest.raises(tf.errors.FailedPreconditionError, match="Could not find variable"):
        SavedModelRunner(version_dir).run("serving_default", {"images": np.zeros((1, 4, 4, 3), np.uint8)})


def test_the_server_refuses_a_version_whose_warmup_fails(broken_export):
    version_dir, _ = broken_export
    server = ServerProcess("--model_base_path", str(version_dir.parent), "--file_system_poll_wait_seconds", "0")
    try:
        with SrganClient(server.target) as client:
            status = client.status()
        assert status[0]["state"] == "END"
        assert "warm-up request 1" in status[0]["error"] and "Could not find variable" in status[0]["error"]
        with pytest.raises(grpc.RpcError) as error:
            raw_predict(server.target, {"images": np.zeros((1, 4, 4, 3), np.uint8)})
        assert error.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        assert server.stop() == 0
