import json
import math
import re
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
from PIL import Image

from tests.helpers import REPO, png_claiming, run_module, tiny_run_args, write_image
from training.config import config_from_args
from training.run import train


def _records(out_dir, kind=None):
    lines = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in lines if kind is None or r["kind"] == kind]


def _checkpoint_steps(out_dir):
    return sorted(int(p.name.split("-")[1].split(".")[0]) for p in (out_dir / "checkpoints").glob("ckpt-*.index"))


@pytest.mark.slow
def test_short_run_writes_checkpoints_samples_and_metrics(tmp_path, cache_dir):
    out = tmp_path / "run"
    summary = train(config_from_args(tiny_run_args(out, cache_dir)))
    assert summary["steps"] == 2 + 2 * 2 and summary["epochs"] == 2
    assert 6 in _checkpoint_steps(out)
    assert json.loads((out / "checkpoints" / "model.json").read_text())["channels"] == 8
    for name in ("pretrain.png", "epoch_0001.png", "epoch_0002.png"):
        sheet = Image.open(out / "samples" / name)
        assert sheet.size == (3 * 32 + 2 * 4, 5 * 32 + 4 * 4)  # bicubic | SR | HR, one row per held-out image
    assert Image.open(out / "test_images" / "lr" / "04.png").size == (8, 8)
    assert Image.open(out / "test_images" / "hr" / "04.png").size == (32, 32)
    epochs = _records(out, "epoch")
    assert [r["epoch"] for r in epochs] == [1, 2]
    for r in epochs:
        assert all(math.isfinite(r[k]) for k in ("psnr", "ssim", "psnr_bicubic", "ssim_bicubic"))
    train_records = _records(out, "train")
    assert {"g_loss", "d_loss", "content_loss", "adversarial_loss", "images_per_second"} <= set(train_records[-1])
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert json.loads((out / "summary.json").read_text())["steps"] == 6


@pytest.mark.slow
def test_rerun_resumes_and_continues_the_step_count(tmp_path, cache_dir):
    out = tmp_path / "run"
    first = train(config_from_args(tiny_run_args(out, cache_dir, "--epochs", "1")))
    assert first["steps"] == 4
    again = train(config_from_args(tiny_run_args(out, cache_dir, "--epochs", "1")))
    assert again["steps"] == 4 and again["images_trained_this_run"] == 0  # nothing left to do
    more = train(config_from_args(tiny_run_args(out, cache_dir, "--epochs", "3")))
    assert more["steps"] == 2 + 3 * 2 and more["images_trained_this_run"] == 2 * 2 * 2
    assert [r["step"] for r in _records(out, "epoch")] == [4, 6, 8]


@pytest.mark.slow
def test_resume_refuses_a_different_model(tmp_path, cache_dir):
    out = tmp_path / "run"
    train(config_from_args(tiny_run_args(out, cache_dir, "--epochs", "1")))
    with pytest.raises(SystemExit) as exit_info:
        train(config_from_args(tiny_run_args(out, cache_dir, "--epochs", "1", "--channels", "16")))
    assert exit_info.value.code == 2


def _wait_for(predicate, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError("timed out")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
@pytest.mark.slow
def test_killed_run_resumes_from_its_checkpoint_with_the_same_step_count(tmp_path, cache_dir, sig):
    out = tmp_path / "run"
    args = tiny_run_args(out, cache_dir, "--epochs", "1000", "--checkpoint-every", "2")
    proc = subprocess.Popen([sys.executable, "-m", "training.run", *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: (out / "metrics.jsonl").exists() and len(_records(out, "epoch")) >= 3)
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    # The newest checkpoint the run recorded as whole: a SIGKILL may land after a checkpoint's files are written and
    # before the manager's index names it, and a resume rightly ignores that one.
    saved = int(re.search(r'^model_checkpoint_path: "ckpt-(\d+)"', (out / "checkpoints" / "checkpoint").read_text(),
                          re.M).group(1))
    if sig == signal.SIGTERM:
        assert proc.returncode == 128 + signal.SIGTERM
        assert "Run the same command again to resume" in stderr
        assert saved > 2 + 3 * 2  # a checkpoint written at the signal, past the last scheduled one
    else:
        assert proc.returncode == -signal.SIGKILL
    resumed_epoch = (saved - 2) // 2
    result = run_module("training.run", *tiny_run_args(out, cache_dir, "--epochs", str(resumed_epoch + 1)))
    assert result.returncode == 0, result.stderr
    assert f"resuming from {out / 'checkpoints' / f'ckpt-{saved}'} (step {saved}" in result.stdout
    assert json.loads((out / "summary.json").read_text())["steps"] == 2 + (resumed_epoch + 1) * 2


@pytest.mark.slow
def test_missing_vgg_weights_stop_the_run_with_one_clear_sentence(tmp_path):
    home = tmp_path / "home"
    result = run_module("training.run", *tiny_run_args(tmp_path / "run", tmp_path / "cache",
                                                       "--content-loss", "vgg"),
                        env={"HOME": str(home), "KERAS_HOME": str(home / ".keras")}, timeout=120)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    error = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1
    for remedy in ("--vgg-weights", "~/.keras/models/", "download", "--content-loss mse"):
        assert remedy in error[0]
    assert not (tmp_path / "run" / "checkpoints").exists()  # stopped before any training


@pytest.mark.slow
def test_vgg_weights_file_that_does_not_exist(tmp_path):
    result = run_module("training.run", *tiny_run_args(tmp_path / "run", tmp_path / "cache", "--content-loss",
                                                       "vgg", "--vgg-weights", str(tmp_path / "nope.h5")))
    assert result.returncode == 2 and "nope.h5 does not exist" in result.stderr


@pytest.mark.slow
def test_vgg_content_loss_from_a_weights_file(tmp_path, cache_dir):
    weights = tmp_path / "vgg19.weights.h5"
    vgg = keras.applications.VGG19(include_top=False, weights=None)
    rng = np.random.default_rng(0)
    for layer in vgg.layers:
        if isinstance(layer, keras.layers.Conv2D):  # He init: features that survive 16 ReLU layers
            kernel, bias = layer.get_weights()
            fan_in = np.prod(kernel.shape[:3])
            layer.set_weights([rng.normal(0, np.sqrt(2 / fan_in), kernel.shape).astype("float32"), bias])
    vgg.save_weights(weights)
    out = tmp_path / "run"
    summary = train(config_from_args(tiny_run_args(out, cache_dir, "--content-loss", "vgg", "--vgg-weights",
                                                   str(weights), "--pretrain-steps", "0", "--epochs", "1",
                                                   "--steps-per-epoch", "1")))
    assert summary["steps"] == 1
    assert _records(out, "train")[-1]["content_loss"] > 0


@pytest.mark.slow
def test_xla_and_mixed_precision_steps_run(tmp_path, cache_dir):
    assert config_from_args(["--mixed-precision"]).precision == "mixed_float16"  # the older spelling
    for flags in (["--xla"], ["--mixed-precision"], ["--precision", "mixed_bfloat16"]):
        summary = train(config_from_args(tiny_run_args(tmp_path / flags[0], cache_dir, *flags, "--epochs", "1",
                                                       "--steps-per-epoch", "1", "--pretrain-steps", "1")))
        assert summary["steps"] == 2
        assert np.isfinite(summary["held_out"]["psnr"])
    keras.mixed_precision.set_global_policy("float32")


@pytest.mark.slow
def test_mirrored_strategy_on_two_logical_cpus(tmp_path, cache_dir):
    out = tmp_path / "run"
    result = run_module("training.run", *tiny_run_args(out, cache_dir, "--strategy", "mirrored",
                                                       "--logical-cpus", "2", "--batch-size", "4"))
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["replicas"] == 2 and summary["steps"] == 6
    assert all(math.isfinite(r["g_loss"]) for r in _records(out, "train") if "g_loss" in r)


@pytest.mark.slow
def test_compile_auto_times_both_modes_and_keeps_the_faster(tmp_path, cache_dir):
    summary = train(config_from_args(tiny_run_args(tmp_path / "run", cache_dir, "--compile", "auto")))
    for phase in ("pretrain", "gan"):
        choice = summary["compile"][phase]
        rates = choice["images_per_second"]
        assert set(rates) == {"xla", "graph"} and all(r > 0 for r in rates.values())
        assert choice["mode"] == max(rates, key=rates.get)
    assert summary["steps"] == 6


def test_old_xla_flags_still_choose_the_compile_mode():
    assert config_from_args(["--xla"]).compile_mode == "xla"
    assert config_from_args(["--no-xla"]).compile_mode == "graph"
    assert config_from_args([]).compile_mode == "auto"


def test_timing_the_compile_modes_leaves_the_model_state_as_it_was():
    from training import compilation
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.BatchNormalization()])
    x = np.random.default_rng(0).normal(5, 2, (8, 4)).astype("float32")
    functions = compilation.gradient_functions(lambda x: model(x, training=True))
    state = model.non_trainable_variables
    before = [v.numpy().copy() for v in state]
    compilation.choose("auto", functions, (x,), 8, state=[])  # nothing restored: the statistics move
    assert not all(np.array_equal(a, v.numpy()) for a, v in zip(before, state))
    for variable, value in zip(state, before):
        variable.assign(value)
    choice = compilation.choose("auto", functions, (x,), 8, state)
    assert choice.mode in ("xla", "graph")
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(before, state))


@pytest.mark.slow
def test_two_workers_train_in_step(tmp_path):
    """Multi-worker training as a user grows past one machine: two processes on 127.0.0.1 with TF_CONFIG,
    gradients all-reduced between them, end with the same weights (each prints their fingerprint)."""
    import os
    import socket
    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    workers = []
    for index in range(2):
        env = {**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        # One data cache for both, as on a shared file system: the first prepares it, the other waits for it.
        args = tiny_run_args(tmp_path / "run", tmp_path / "cache", "--strategy", "multi-worker", "--batch-size", "4",
                             "--pretrain-steps", "3", "--epochs", "1", "--steps-per-epoch", "2")
        workers.append(subprocess.Popen([sys.executable, "-m", "training.run", *args], cwd=REPO, env=env,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs[0][-2000:] + outputs[1][-2000:]
    prints = [[line for line in out.splitlines() if line.startswith("generator weights fingerprint")]
              for out in outputs]
    assert len(prints[0]) == 1 and prints[0] == prints[1], prints
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())  # written by the chief only
    assert summary["replicas"] == 2 and summary["steps"] == 5
    assert prints[0][0].endswith(summary["generator_fingerprint"])


@pytest.mark.slow
def test_a_truncated_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, cache_dir):
    from training.config import config_from_args
    from training.run import train
    out = tmp_path / "run"
    train(config_from_args(tiny_run_args(out, cache_dir)))  # checkpoints at steps 2, 4, 6
    for data in (out / "checkpoints").glob("ckpt-6.data-*"):
        data.write_bytes(data.read_bytes()[:50])
    result = subprocess.run([sys.executable, "-m", "training.run", *tiny_run_args(out, cache_dir, "--epochs", "3")],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "ckpt-6 is unreadable" in result.stderr
    assert f"resuming from {out / 'checkpoints' / 'ckpt-4'} (step 4" in result.stdout
    assert json.loads((out / "summary.json").read_text())["steps"] == 2 + 3 * 2


@pytest.mark.slow
def test_training_on_a_folder_with_bad_files_uses_the_good_ones_and_reports_the_rest(tmp_path, cache_dir):
    from training.config import config_from_args
    from training.run import train
    folder = tmp_path / "photos"
    rng = np.random.default_rng(3)
    for i in range(8):
        write_image(folder / f"good{i}.jpg", rng.integers(0, 256, (48, 40, 3), dtype=np.uint8))
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    (folder / "empty.png").write_bytes(b"")
    (folder / "huge.png").write_bytes(png_claiming(30000, 30000))  # 900 Mpx: a decompression bomb
    (folder / "notes.jpg").write_text("meeting notes, not a picture")
    summary = train(config_from_args(tiny_run_args(tmp_path / "run", tmp_path / "cache", "--data-dir", str(folder),
                                                   "--epochs", "1", "--steps-per-epoch", "1")))
    data = summary["data"]
    assert data["kind"] == "folder" and data["used"] == 8 and data["train"] == 3 and data["test"] == 5
    assert data["skipped"] == {"unreadable": 2, "empty file": 1, "too large": 1}
    print(f"\ndata: {data['used']} images used, skipped {data['skipped']}")


def test_cosine_cycles_restart_at_half_the_previous_peak():
    """--lr-cycles 3 over 15 000 steps: the three 5 000-step runs of the shipped generator, each from the last
    at half the rate, in one schedule; the first cycle is the one-cycle schedule over 5 000 steps."""
    from training.schedule import PretrainThenGan
    cycles = PretrainThenGan(2e-4, 15_000, 1e-5, cosine=True, cycles=3)
    single = PretrainThenGan(2e-4, 5_000, 1e-5, cosine=True)
    rate = lambda schedule, step: float(schedule(step))  # noqa: E731
    for step in (0, 1_250, 2_500, 4_999):
        assert rate(cycles, step) == pytest.approx(rate(single, step), rel=1e-5)
    assert [rate(cycles, step) for step in (0, 5_000, 10_000)] == pytest.approx([2e-4, 1e-4, 5e-5], rel=1e-6)
    assert rate(cycles, 14_999) == pytest.approx(5e-5 * 1e-3, rel=1e-2)  # decayed to 1/1000 of its peak
    assert rate(cycles, 15_000) == pytest.approx(1e-5)  # then the GAN phase's rate


def test_precision_auto_is_float32_where_bfloat16_is_not_native_and_times_both_where_it_is():
    from core.model_spec import ModelSpec
    from training.model import build_generator
    from training.precision import choose
    tiny = lambda: build_generator(ModelSpec(channels=8, residual_blocks=1))  # noqa: E731
    assert choose("auto", tiny, 8, 2, native=[]).policy == "float32"  # nothing timed where it would be emulated
    assert choose("auto", tiny, 8, 2, native=["mixed_float16"]).policy == "float32"  # float16 never chosen
    assert choose("mixed_bfloat16", tiny, 8, 2, native=[]).policy == "mixed_bfloat16"  # asked for: as asked
    assert choose("auto", tiny, 8, 2, started_with="mixed_bfloat16").policy == "mixed_bfloat16"  # resumed run
    untimed = choose("auto", tiny, 8, 2, native=["mixed_bfloat16"], timed=False)  # a multi-worker run's workers
    assert untimed.policy == "mixed_bfloat16" and not untimed.images_per_second
    timed = choose("auto", tiny, 8, 2, native=["mixed_bfloat16"])
    assert set(timed.images_per_second) == {"float32", "mixed_bfloat16"}
    faster = timed.images_per_second["mixed_bfloat16"] >= 1.1 * timed.images_per_second["float32"]
    assert timed.policy == ("mixed_bfloat16" if faster else "float32")
    assert keras.mixed_precision.global_policy().name == "float32"  # the timing left the policy as it found it
