import io
import json
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
import tensorflow as tf
from PIL import Image
from tensorflow_serving.apis import prediction_log_pb2

from export import parity
from export.repository import staged_version
from export.run import ExportConfig, export
from serving.onnx_runtime import create_session
from tests.helpers import LOOSE_GATE, REPO, gate_photographs, run_module


@pytest.fixture
def run_dir(trained_run):
    return trained_run


def test_version_directory_holds_savedmodel_warmup_onnx_and_parity(exported):
    version_dir, _ = exported
    assert version_dir.name == "1"
    for name in ("saved_model.pb", "variables", "assets.extra/tf_serving_warmup_requests", "model.onnx",
                 "model_float.onnx", "parity.json", "parity.md", "export.json"):
        assert (version_dir / name).exists(), name
    assert not [p for p in version_dir.parent.iterdir() if p.name.startswith(".staging")]


def test_saved_model_cli_reads_the_signatures(exported):
    cli = Path(sys.executable).parent / "saved_model_cli"
    result = subprocess.run([str(cli), "show", "--all", "--dir", str(exported[0])], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    for text in ("signature_def['serving_default']", "signature_def['predict_float']",
                 "signature_def['predict_encoded']", "images", "DT_UINT8", "sr_images", "(-1, -1, -1, 3)"):
        assert text in result.stdout, text


def test_onnx_files_pass_the_checker_with_dynamic_shapes_and_metadata(exported):
    version_dir, _ = exported
    for name, dtype in (("model.onnx", onnx.TensorProto.UINT8), ("model_float.onnx", onnx.TensorProto.FLOAT)):
        model = onnx.load(version_dir / name)
        onnx.checker.check_model(model, full_check=True)
        (tensor,) = model.graph.input
        assert tensor.type.tensor_type.elem_type == dtype
        dims = tensor.type.tensor_type.shape.dim
        assert [d.dim_value for d in dims] == [0, 0, 0, 3] and all(d.dim_param for d in dims[:3])
        props = {p.key: p.value for p in model.metadata_props}
        assert props["scale"] == "4" and props["step"] == "3" and props["source_checkpoint"].endswith("ckpt-3")


def test_dynamic_shapes_work_in_savedmodel_and_onnx(exported):
    version_dir, _ = exported
    images = np.random.default_rng(0).integers(0, 256, (3, 11, 13, 3), dtype=np.uint8)
    serve = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    tf_out = serve(images=tf.constant(images))["sr_images"].numpy()
    onnx_out = create_session(version_dir / "model.onnx").run(None, {"images": images})[0]
    assert tf_out.shape == onnx_out.shape == (3, 44, 52, 3)
    assert tf_out.dtype == onnx_out.dtype == np.uint8


def test_parity_holds_within_the_default_tolerances(exported):
    version_dir, report = exported
    assert report["passed"]
    saved = json.loads((version_dir / "parity.json").read_text())
    pairs = {p["pair"]: p for p in saved["float32"]["pairs"]}
    assert set(pairs) >= {"keras vs savedmodel", "keras vs savedmodel-graph",
                          "keras vs savedmodel-graph predict_encoded", "keras vs onnx-cpu"}
    for p in pairs.values():
        assert p.get("max_abs", 0.0) <= 1e-4 and p["identical"] >= 0.999 and p["max_uint8_diff"] <= 1
    names = [c["name"] for c in saved["float32"]["cases"]]
    assert {"held-out 1×8×8", "held-out 4×8×8", "photos 4×40×56", "random 1×32×32"} <= set(names)
    assert "| keras vs onnx-cpu |" in (version_dir / "parity.md").read_text()


def test_encoded_signature_returns_png_of_four_times_the_size(exported):
    version_dir, _ = exported
    loaded = tf.saved_model.load(str(version_dir))
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (9, 7, 3), dtype=np.uint8), rng.integers(0, 256, (5, 12, 3), dtype=np.uint8)]
    blobs = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        blobs.append(buffer.getvalue())
    pngs = loaded.signatures["predict_encoded"](image_bytes=tf.constant(blobs))["sr_png_bytes"].numpy()
    for image, png in zip(images, pngs):
        decoded = np.asarray(Image.open(io.BytesIO(png)))
        expected = loaded.signatures["serving_default"](images=tf.constant(image[None]))["sr_images"][0]
        np.testing.assert_array_equal(decoded, expected.numpy())


def test_warmup_records_are_prediction_logs(exported):
    records = list(tf.data.TFRecordDataset(str(exported[0] / "assets.extra" / "tf_serving_warmup_requests")))
    assert len(records) == 2
    log = prediction_log_pb2.PredictionLog.FromString(records[1].numpy())
    request = log.predict_log.request
    assert request.model_spec.signature_name == "serving_default"
    assert tf.make_ndarray(request.inputs["images"]).shape == (4, 32, 32, 3)


def _perturb(src: Path, dst: Path) -> Path:
    model = onnx.load(src)
    biggest = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    weights = onnx.numpy_helper.to_array(biggest).copy()
    weights.flat[0] += 0.5  # one weight of the largest kernel
    biggest.CopyFrom(onnx.numpy_helper.from_array(weights, biggest.name))
    onnx.save(model, dst)
    return dst


def test_a_perturbed_onnx_model_fails_the_parity_check(exported, run_dir, tmp_path):
    from export.checkpoint import find_checkpoint, load_generator
    version_dir, _ = exported
    reference = parity.keras_backend(load_generator(find_checkpoint(run_dir, None)).model)
    broken = parity.onnx_backends(_perturb(version_dir / "model.onnx", tmp_path / "u8.onnx"),
                                  _perturb(version_dir / "model_float.onnx", tmp_path / "f.onnx"))
    report = parity.compare(reference, broken, parity.parity_cases(run_dir / "test_images" / "lr"),
                            parity.Tolerance())
    assert not report["passed"]
    intact = parity.compare(reference, parity.onnx_backends(version_dir / "model.onnx",
                                                            version_dir / "model_float.onnx"),
                            parity.parity_cases(run_dir / "test_images" / "lr"), parity.Tolerance())
    assert intact["passed"]


def test_failed_parity_exits_1_and_is_never_published_even_with_no_bless(run_dir, tmp_path):
    result = run_module("export.to_onnx", "--run-dir", str(run_dir), "--repository", str(tmp_path),
                        "--max-abs", "0", "--no-bless")
    assert result.returncode == 1, result.stderr
    assert "PARITY FAILED" in result.stdout and "**FAIL**" in result.stdout
    assert sorted(p.name for p in (tmp_path / "srgan").iterdir()) == [".export.lock", ".rejected"]
    kept = tmp_path / "srgan" / ".rejected" / "1"
    assert json.loads((kept / "parity.json").read_text())["passed"] is False
    assert json.loads((kept / "blessing.json").read_text())["blessed"] is False


def test_versions_increase_and_are_never_overwritten(run_dir, tmp_path):
    config = ExportConfig(run_dir=run_dir, repository=tmp_path, bless=False)
    assert export(config)[0].name == "1"
    assert export(config)[0].name == "2"
    pb = tmp_path / "srgan" / "1" / "saved_model.pb"
    stamp = pb.stat().st_mtime_ns
    with pytest.raises(SystemExit) as refused:
        export(ExportConfig(run_dir=run_dir, repository=tmp_path, version=1, bless=False))
    assert refused.value.code == 2 and pb.stat().st_mtime_ns == stamp
    export(ExportConfig(run_dir=run_dir, repository=tmp_path, version=1, overwrite=True, bless=False))
    assert pb.stat().st_mtime_ns != stamp
    assert sorted(p.name for p in (tmp_path / "srgan").iterdir()) == [".export.lock", "1", "2"]


def test_a_failure_inside_the_export_removes_its_staging_folder(tmp_path):
    with pytest.raises(RuntimeError):
        with staged_version(tmp_path / "srgan", 1, overwrite=False) as stage:
            (stage.path / "saved_model.pb").write_bytes(b"half")
            raise RuntimeError("killed")
    assert list((tmp_path / "srgan").iterdir()) == []


def test_a_killed_export_leaves_no_partial_version(run_dir, tmp_path):
    model_path = tmp_path / "srgan"
    proc = subprocess.Popen([sys.executable, "-m", "export.to_onnx", "--run-dir", str(run_dir),
                             "--repository", str(tmp_path), "--no-bless"], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(model_path.glob(".staging-*/saved_model.pb")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert list(model_path.glob(".staging-*")), "the export should have been killed mid-way"
    assert [p for p in model_path.iterdir() if p.name.isdigit()] == []
    version_dir, report = export(ExportConfig(run_dir=run_dir, repository=tmp_path, bless=False))
    assert version_dir.name == "1" and report["passed"]
    assert not list(model_path.glob(".staging-*"))  # the abandoned one was cleaned up


@pytest.mark.parametrize("problem", ["no-checkpoint", "unreadable", "opset", "unwritable", "no-photographs"])
def test_bad_input_is_one_sentence_and_exit_2(problem, run_dir, tmp_path):
    args = ["--run-dir", str(run_dir), "--repository", str(tmp_path / "models")]
    if problem == "no-checkpoint":
        args = ["--run-dir", str(tmp_path / "empty-run"), "--repository", str(tmp_path / "models")]
    elif problem == "unreadable":
        broken = tmp_path / "run"
        shutil.copytree(run_dir / "checkpoints", broken / "checkpoints")
        for data in (broken / "checkpoints").glob("*.data-*"):
            data.write_bytes(data.read_bytes()[:100])
        args[1] = str(broken)
    elif problem == "opset":
        args += ["--opset", "99"]
    elif problem == "no-photographs":
        (tmp_path / "empty").mkdir()
        args += ["--eval-images", str(tmp_path / "empty")]
    else:
        (tmp_path / "a-file").write_text("not a folder")
        args[3] = str(tmp_path / "a-file")
    result = run_module("export.to_onnx", *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert len([line for line in result.stderr.splitlines() if line.startswith("error:")]) == 1


def test_fp16_variant_has_its_own_tolerance(run_dir, tmp_path):
    result = run_module("export.to_onnx", "--run-dir", str(run_dir), "--repository", str(tmp_path), "--fp16",
                        "--no-bless")
    assert result.returncode == 0, result.stderr
    version_dir = tmp_path / "srgan" / "1"
    model = onnx.load(version_dir / "model_fp16.onnx")
    onnx.checker.check_model(model, full_check=True)
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)
    def not_json(constant):
        raise AssertionError(f"parity.json holds {constant}, which is not JSON")
    fp16 = json.loads((version_dir / "parity.json").read_text(), parse_constant=not_json)["float16"]
    assert fp16["passed"] and fp16["tolerance"]["max_uint8_diff"] == 8
    assert fp16["tolerance"]["max_abs"] is None  # no float bound for float16: null, not Infinity
    assert fp16["pairs"][0]["identical"] >= 0.9


def test_the_prelu_pass_makes_each_prelu_one_onnx_node_with_the_same_answers(exported, trained_run):
    import keras
    import onnxruntime as ort
    from export.checkpoint import find_checkpoint
    from export.onnx_passes import fuse_prelu
    from training.checkpointing import load_generator
    generator = load_generator(find_checkpoint(trained_run, None)).model
    prelus = sum(isinstance(layer, keras.layers.PReLU) for layer in generator._flatten_layers())
    images = np.random.default_rng(6).integers(0, 256, (2, 12, 10, 3), dtype=np.uint8)
    for name, key, x in (("model.onnx", "images", images), ("model_float.onnx", "lr", images / 127.5 - 1)):
        model = onnx.load(str(exported[0] / name))
        assert {p.key: p.value for p in model.metadata_props}["prelu_nodes_fused"] == "0"  # off by default
        run = lambda m: ort.InferenceSession(m.SerializeToString(),  # noqa: E731
                                             providers=["CPUExecutionProvider"]).run(None, {key: x.astype(
                                                 np.uint8 if key == "images" else np.float32)})[0]
        before = run(model)
        assert fuse_prelu(model) == prelus
        ops = [node.op_type for node in model.graph.node]
        assert ops.count("PRelu") == prelus and "Neg" not in ops, ops
        onnx.checker.check_model(model, full_check=True)
        assert np.abs(run(model).astype(np.float64) - before).max() <= 1e-5


def test_the_prelu_pass_leaves_a_pattern_whose_parts_are_used_elsewhere():
    from onnx import TensorProto, helper, numpy_helper
    from export.onnx_passes import fuse_prelu

    def graph(extra_output: bool):
        nodes = [helper.make_node("Relu", ["x"], ["pos"]), helper.make_node("Neg", ["x"], ["negx"]),
                 helper.make_node("Relu", ["negx"], ["rneg"]), helper.make_node("Mul", ["rneg", "c"], ["neg"]),
                 helper.make_node("Add", ["pos", "neg"], ["y"])]
        outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 3, 3])]
        if extra_output:  # the negative branch is also an output: fusing would lose it
            outputs.append(helper.make_tensor_value_info("rneg", TensorProto.FLOAT, [1, 2, 3, 3]))
        c = numpy_helper.from_array(np.array([[[[-0.25]], [[-0.5]]]], np.float32), "c")
        return helper.make_model(helper.make_graph(
            nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3, 3])], outputs, [c]),
            opset_imports=[helper.make_opsetid("", 17)], ir_version=8)

    import onnxruntime as ort
    run = lambda model: ort.InferenceSession(model.SerializeToString(),  # noqa: E731
                                             providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    x = np.random.default_rng(0).normal(size=(1, 2, 3, 3)).astype(np.float32)
    fused = graph(False)
    reference = run(fused)
    assert fuse_prelu(fused) == 1 and [n.op_type for n in fused.graph.node] == ["PRelu"]
    onnx.checker.check_model(fused, full_check=True)
    assert np.array_equal(run(fused), reference)
    expected = np.where(x >= 0, x, x * np.array([0.25, 0.5], np.float32)[None, :, None, None])
    assert np.allclose(reference, expected)
    shared = graph(True)
    assert fuse_prelu(shared) == 0 and len(shared.graph.node) == 5


def test_int8_copy_is_quantised_calibrated_and_scored_on_held_out_photographs(run_dir, tmp_path):
    result = run_module("export.to_onnx", "--run-dir", str(run_dir), "--repository", str(tmp_path), "--int8",
                        "--int8-max-loss", "50", "--int8-float-layers", "1", "--no-bless")
    assert result.returncode == 0, result.stderr
    version_dir = tmp_path / "srgan" / "1"
    report = json.loads((version_dir / "export.json").read_text())["int8"]
    assert report["kept"] and report["file"] == "model_int8.onnx" and "model_int8.onnx" in result.stdout
    from training.evaluation import held_out_pairs
    assert sorted(report["held_out"]["images"]) == sorted(p.name for p in held_out_pairs())  # those installed
    from training.data import photos
    assert report["calibration"]["crops"] == 4 * len(photos.available(photos.TRAINING_PHOTOS)[0])
    assert len(report["float_layers"]) <= 1
    model = onnx.load(version_dir / "model_int8.onnx")
    ops = [node.op_type for node in model.graph.node]
    assert ops.count("DequantizeLinear") >= 2 * (ops.count("Conv") - len(report["float_layers"]))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    images = np.random.default_rng(8).integers(0, 256, (2, 13, 11, 3), dtype=np.uint8)
    float_out, int8_out = (create_session(version_dir / name, ["CPUExecutionProvider"]).run(None, {"images": images})[0]
                           for name in ("model.onnx", "model_int8.onnx"))
    assert int8_out.shape == (2, 52, 44, 3) and int8_out.dtype == np.uint8
    assert np.abs(int8_out.astype(int) - float_out).mean() < 4  # the same picture, rounded differently


def test_an_int8_copy_over_the_quality_budget_is_not_kept(exported, tmp_path):
    from export import int8
    shutil.copy(exported[0] / "model.onnx", tmp_path / "model.onnx")
    report = int8.write_int8_model(tmp_path / "model.onnx", tmp_path / int8.FILE_NAME, 4,
                                   int8.Int8Settings(max_psnr_loss=-1.0, max_float_layers=2))
    assert not report["kept"] and report["file"] is None and "> the budget" in report["reason"]
    assert len(report["float_layers"]) == 2  # it tried leaving layers in float before giving up
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]  # no file, no work folder left


def test_two_exports_of_one_model_take_turns(run_dir, tmp_path):
    """Started together, they publish versions 1 and 2, neither replacing the other (a lock in the model's
    folder); before the lock both chose version 1 and the second silently replaced the first."""
    command = [sys.executable, "-m", "export.to_onnx", "--run-dir", str(run_dir), "--repository", str(tmp_path),
               "--no-bless"]
    procs = [subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outputs = [proc.communicate(timeout=900) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], outputs[0][1][-2000:] + outputs[1][1][-2000:]
    versions = sorted(p.name for p in (tmp_path / "srgan").iterdir() if not p.name.startswith("."))
    assert versions == ["1", "2"]
    published = sorted(line.rsplit("/", 1)[1] for _, err in outputs for line in err.splitlines() if "published" in line)
    assert published == ["1", "2"]


@pytest.mark.parametrize("flags, sentence", [
    ({"model_name": "../escaped"}, "must be a plain folder name"),
    ({"model_name": ".hidden"}, "must be a plain folder name"),
    ({"version": 1 << 63}, "up to 9223372036854775807"),
])
def test_a_model_name_that_leaves_the_repository_or_a_version_beyond_int64_is_refused(tmp_path, capsys, flags,
                                                                                        sentence):
    with pytest.raises(SystemExit) as refused:
        export(ExportConfig(run_dir=tmp_path / "no-run", repository=tmp_path / "models", **flags))
    assert refused.value.code == 2 and sentence in capsys.readouterr().err
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "models").exists()


EXPORT_STAGES = ["writing the SavedModel", "writing the ONNX files", "measuring parity", "writing the reports",
                 "deployment gate: infra validation", "deployment gate: scoring"]


@pytest.mark.parametrize("stage", EXPORT_STAGES)
def test_an_export_killed_at_any_stage_leaves_no_partial_or_unblessed_version(trained_run, tmp_path, stage):
    """SIGKILL while the export is inside `stage` (it logs each stage as it starts), then export again. The gate's
    thresholds are loose here, so that the export, when it finishes, publishes."""
    model_path = tmp_path / "srgan"
    gate = [*LOOSE_GATE, "--eval-images", str(gate_photographs(tmp_path / "photos"))]
    proc = subprocess.Popen([sys.executable, "-m", "export.to_onnx", "--run-dir", str(trained_run),
                             "--repository", str(tmp_path), *gate], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if stage in line:
            time.sleep(random.Random(stage).uniform(0.0, 0.3))  # somewhere inside the stage, not at its edge
            break
    proc.kill()
    proc.wait()
    assert any(stage in line for line in seen), f"the export never reached {stage!r}:\n" + "".join(seen)
    visible = [p.name for p in model_path.iterdir() if not p.name.startswith(".")]
    if visible:  # the last stage is short: the kill may come after the version was published, complete
        assert visible == ["1"] and json.loads((model_path / "1" / "blessing.json").read_text())["blessed"]
    else:  # killed while writing or judging: the work is hidden, nothing a server would load
        assert [p for p in model_path.iterdir() if p.name.startswith(".staging-")]
    result = run_module("export.to_onnx", "--run-dir", str(trained_run), "--repository", str(tmp_path), *gate)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    published = str(len(visible) + 1)
    assert json.loads((model_path / published / "blessing.json").read_text())["blessed"]
    assert sorted(p.name for p in model_path.iterdir()) == [".export.lock", *visible, published]  # staging gone


def _shipped(folder: Path, seed: int, objective: str) -> Path:
    """A tiny generator saved as training.publish ships one, with a card that says what it is for."""
    import keras

    from training.model import ModelSpec, build_generator
    keras.utils.set_random_seed(seed)
    spec = ModelSpec(channels=4, residual_blocks=1)
    folder.mkdir(parents=True)
    build_generator(spec).save_weights(str(folder / "generator.weights.h5"))
    spec.save(folder)
    (folder / "card.json").write_text(json.dumps({"objective": objective, "steps": {"generator.weights.h5": seed}}))
    return folder


@pytest.mark.slow
def test_an_interpolated_export_records_alpha_and_the_nearer_models_objective(tmp_path):
    psnr = _shipped(tmp_path / "psnr", 1, "distortion")
    gan = _shipped(tmp_path / "gan", 2, "perception")
    result = run_module("export.to_onnx", "--weights", str(psnr), "--interpolate", str(gan), "--alpha", "0.6",
                        "--repository", str(tmp_path / "models"), "--model-name", "blend", "--no-bless")
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads((tmp_path / "models" / "blend" / "1" / "export.json").read_text())
    assert record["interpolation"] == {"alpha": 0.6, "psnr_weights": str(psnr), "gan_weights": str(gan)}
    assert record["objective"] == "perception"  # α ≥ 0.5: the GAN's
    assert "blended with" in result.stderr and "a perception model" in result.stderr


@pytest.mark.slow  # a TensorFlow process each
@pytest.mark.parametrize("flags, sentence", [
    (["--interpolate", "x"], "--interpolate GAN_WEIGHTS and --alpha A go together"),
    (["--alpha", "0.5"], "--interpolate GAN_WEIGHTS and --alpha A go together"),
    (["--interpolate", "x", "--alpha", "0.5", "--run-dir", "runs/none"], "--interpolate needs --weights"),
])
def test_interpolation_flags_that_do_not_go_together_are_one_sentence(flags, sentence, tmp_path):
    result = run_module("export.to_onnx", *flags, "--repository", str(tmp_path / "models"), "--no-bless")
    assert result.returncode == 2 and sentence in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_an_alpha_outside_zero_to_one_is_refused(tmp_path):
    psnr, gan = _shipped(tmp_path / "psnr", 1, "distortion"), _shipped(tmp_path / "gan", 2, "perception")
    result = run_module("export.to_onnx", "--weights", str(psnr), "--interpolate", str(gan), "--alpha", "1.5",
                        "--repository", str(tmp_path / "models"), "--no-bless")
    assert result.returncode == 2 and "--alpha must be between 0" in result.stderr
    assert not (tmp_path / "models" / "srgan").exists()
