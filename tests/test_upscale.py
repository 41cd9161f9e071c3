import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from core.export_record import ExportRecord
from serving.onnx_runtime import create_session
from serving.tiling import tiled_upscale
from tests.helpers import REPO, png_claiming, run_module, write_image


def _session_fn(version_dir):
    session = create_session(version_dir / "model.onnx")
    return lambda images: session.run(None, {"images": images})[0]


def test_tiled_upscaling_equals_whole_image_upscaling(exported):
    upscale = _session_fn(exported[0])
    radius = ExportRecord.load(exported[0]).model_spec.receptive_radius
    image = np.random.default_rng(0).integers(0, 256, (70, 90, 3), dtype=np.uint8)  # not a multiple of 24
    whole = upscale(image[None])[0]
    shapes = []
    tiled = tiled_upscale(image, lambda x: shapes.append(x.shape) or upscale(x), tile=24, overlap=radius)
    diff = np.abs(tiled.astype(int) - whole)
    assert tiled.shape == (280, 360, 3)
    assert (diff == 0).mean() >= 0.999 and diff.max() <= 1
    window = 24 + 2 * radius
    assert len(shapes) > 4 and set(shapes) == {(1, window, window, 3)}  # one shape: TF Serving can batch them
    small = image[:20, :30]
    shapes.clear()
    tiled_upscale(small, lambda x: shapes.append(x.shape) or upscale(x), tile=24, overlap=radius)
    assert shapes == [(1, 20, 30, 3)]  # smaller than a window: sent whole
    seamed = tiled_upscale(image, upscale, tile=24, overlap=0)  # without overlap the seams show
    assert np.abs(seamed.astype(int) - whole).max() > 10


def test_upscale_command_handles_grey_alpha_exif_and_bad_files(exported, tmp_path):
    rng = np.random.default_rng(1)
    rgb = write_image(tmp_path / "in" / "photo.jpg", rng.integers(0, 256, (12, 20, 3), dtype=np.uint8))
    grey = write_image(tmp_path / "in" / "grey.png", rng.integers(0, 256, (10, 10), dtype=np.uint8))
    rgba = rng.integers(0, 256, (8, 9, 4), dtype=np.uint8)
    alpha = write_image(tmp_path / "in" / "alpha.png", rgba)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    rotated = tmp_path / "in" / "rotated.jpg"
    Image.fromarray(rng.integers(0, 256, (10, 20, 3), dtype=np.uint8)).save(rotated, exif=exif)
    broken = tmp_path / "in" / "broken.png"
    broken.write_bytes(b"\x89PNG but not really")
    result = run_module("serving.upscale", str(rgb), str(grey), str(broken), str(alpha), str(rotated),
                        "-o", str(tmp_path / "out"), "--backend", "onnx", "--model-dir", str(exported[0].parent))
    assert result.returncode == 1, result.stderr
    assert "upscaled 4 of 5 images" in result.stdout and "broken.png" in result.stderr
    out = tmp_path / "out"
    assert Image.open(out / "photo_x4.png").size == (80, 48)
    assert Image.open(out / "grey_x4.png").mode == "L"
    alpha_out = Image.open(out / "alpha_x4.png")
    assert alpha_out.mode == "RGBA" and alpha_out.size == (36, 32)
    assert Image.open(out / "rotated_x4.png").size == (40, 80)  # 20×10 stored, 10×20 displayed
    assert not (out / "broken_x4.png").exists()


def test_a_name_whose_output_just_fits_is_upscaled(exported, tmp_path):
    """The output's name (stem + "_x4.png") is 255 bytes, the file system's limit: its temporary file's name,
    once "." + that name + ".partial", must fit as well."""
    photo = write_image(tmp_path / "in" / ("p" * 248 + ".png"), np.zeros((8, 8, 3), np.uint8))
    result = run_module("serving.upscale", str(photo), "-o", str(tmp_path / "out"), "--backend", "onnx",
                        "--model-dir", str(exported[0].parent))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / ("p" * 248 + "_x4.png")).is_file()
    assert not list((tmp_path / "out").glob(".*"))


def test_ctrl_c_stops_with_a_summary_and_leaves_only_whole_files(exported, tmp_path):
    import signal
    import subprocess
    import sys
    import time
    from tests.helpers import REPO
    # Large enough that the 300 take tens of seconds even with the tiny test model: Ctrl-C comes long before the end.
    inputs = [write_image(tmp_path / "in" / f"{i:03d}.png", np.full((192, 192, 3), i % 256, np.uint8))
              for i in range(300)]
    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, "-m", "serving.upscale", *map(str, inputs), "-o", str(out),
                                "--backend", "onnx", "--model-dir", str(exported[0].parent)], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               # As a terminal starts it: a shell's background job (CI) would inherit SIGINT ignored.
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not list(out.glob("*_x4.png")) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr and "interrupted:" in stderr and "each complete" in stderr
    assert not list(out.glob(".*"))  # no temporary file left
    written = list(out.glob("*_x4.png"))
    assert 0 < len(written) < len(inputs)
    for path in written:
        assert Image.open(path).size == (768, 768)


def test_missing_model_is_one_clear_sentence(tmp_path):
    image = write_image(tmp_path / "a.png", np.zeros((4, 4, 3), np.uint8))
    result = run_module("serving.upscale", str(image), "-o", str(tmp_path / "out"), "--model-dir",
                        str(tmp_path / "nothing"))
    assert result.returncode == 2 and "export one with python -m export.to_onnx" in result.stderr


def test_bound_runner_matches_a_plain_session_run(exported):
    from serving.onnx_runtime import BoundRunner
    session = create_session(exported[0] / "model.onnx")
    runner = BoundRunner(session, (2, 9, 11, 3))
    for seed in range(2):
        images = np.random.default_rng(seed).integers(0, 256, (2, 9, 11, 3), dtype=np.uint8)
        np.testing.assert_array_equal(runner(images), session.run(None, {"images": images})[0])


def test_device_runner_binds_each_shape_once_and_answers_like_plain_runs(exported):
    """The server's GPU path, run here on the CPU provider: concurrent calls of two bound shapes and one past
    `max_shapes` (run plainly) each get their own answer, never a later call's buffer. With `graphs` on, each
    bound shape gets its own CUDA graph id from 1 (the CPU provider ignores them, so the answers are the same),
    and none without."""
    import concurrent.futures
    from serving.onnx_runtime import DeviceRunner
    session = create_session(exported[0] / "model.onnx")
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, shape, dtype=np.uint8)
              for shape in [(1, 8, 8, 3), (2, 8, 8, 3), (1, 6, 10, 3)] * 4]
    expected = [session.run(None, {"images": x})[0] for x in images]
    for graphs in (False, True):
        runner = DeviceRunner(session, graphs=graphs, max_shapes=2)
        for x in images[:3]:  # the first two shapes seen are bound
            runner(x)
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(runner, images))
        for answer, reference in zip(answers, expected):
            np.testing.assert_array_equal(answer, reference)
        assert runner.bound_shapes == [(1, 8, 8, 3), (2, 8, 8, 3)]
        graph_ids = [bound.graph_id for bound in runner._bound.values() if bound is not None]
        assert graph_ids == ([1, 2] if graphs else [None, None])


def test_no_gpu_provider_is_asked_for_without_a_gpu(exported):
    from serving.onnx_runtime import default_providers, gpu_visible
    if gpu_visible():
        pytest.skip("a GPU is visible here")
    assert default_providers() == ["CPUExecutionProvider"]
    assert create_session(exported[0] / "model.onnx").get_providers() == ["CPUExecutionProvider"]


def test_outputs_never_collide_nor_overwrite_an_input_and_are_refused_before_any_work(tmp_path):
    """Three inputs named a, an output that would replace an input, and -o naming a file: each refused in one
    sentence with exit status 2, before any model or server is touched (the target below does not exist)."""
    image = np.zeros((8, 8, 3), np.uint8)
    inputs = [write_image(tmp_path / name, image) for name in ("a.png", "a.bmp", "sub/a.png")]
    remote = ("--backend", "grpc", "--target", "127.0.0.1:9")
    result = run_module("serving.upscale", *map(str, inputs), "-o", str(tmp_path / "out"), *remote, timeout=120)
    assert result.returncode == 2 and "would all be written as" in result.stderr, result.stderr[-500:]
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()

    already = write_image(tmp_path / "p_x4.png", image)
    result = run_module("serving.upscale", str(write_image(tmp_path / "p.png", image)), str(already), "-o",
                        str(tmp_path), *remote, timeout=120)
    assert result.returncode == 2 and "would overwrite the input" in result.stderr, result.stderr[-500:]
    assert np.array_equal(np.asarray(Image.open(already)), image)  # untouched

    result = run_module("serving.upscale", str(inputs[0]), "-o", str(already), *remote, timeout=120)
    assert result.returncode == 2 and "is a file" in result.stderr and "Traceback" not in result.stderr


def test_upscale_command_survives_bombs_truncated_files_and_reads_16_bit_as_training_does(exported, tmp_path, rng):
    folder = tmp_path / "in"
    good = write_image(folder / "good.png", rng.integers(0, 256, (12, 14, 3), dtype=np.uint8))
    (folder / "bomb.png").write_bytes(png_claiming(100_000, 100_000))  # 10 gigapixels in 60 bytes
    truncated = write_image(folder / "cut.jpg", rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    truncated.write_bytes(truncated.read_bytes()[:300])
    deep = (np.arange(10 * 11, dtype=np.uint16).reshape(10, 11) * 500).astype(np.uint16)  # uses all 16 bits
    from PIL import Image
    Image.fromarray(deep).save(folder / "deep.png")  # mode I;16
    last = write_image(folder / "z_last.png", rng.integers(0, 256, (9, 9, 3), dtype=np.uint8))
    files = [good, folder / "bomb.png", truncated, folder / "deep.png", last]
    result = subprocess.run([sys.executable, "-m", "serving.upscale", *map(str, files), "-o", str(tmp_path / "out"),
                             "--model-dir", str(exported[0].parent)], cwd=REPO, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "upscaled 3 of 5 images" in result.stdout
    assert "bomb.png: too large" in result.stderr and "cut.jpg: unreadable" in result.stderr
    for name in ("good_x4.png", "deep_x4.png", "z_last_x4.png"):  # files after the bad ones still processed
        assert (tmp_path / "out" / name).exists(), name
    out = np.asarray(Image.open(tmp_path / "out" / "deep_x4.png"))
    eight_bit = np.round(deep / 257.0).astype(np.uint8)  # scaled, not clipped
    expected = create_session(exported[0] / "model.onnx").run(
        None, {"images": np.repeat(eight_bit[None, ..., None], 3, axis=3)})[0][0]
    expected_grey = np.asarray(Image.fromarray(expected).convert("L"))
    assert out.shape == (40, 44) and np.abs(out.astype(int) - expected_grey).max() <= 1
    assert (out == 255).mean() < 0.5  # the old reader clipped almost every pixel to 255


def test_the_gpu_thread_works_in_a_forked_child():
    """A forked child has none of its parent's threads: without a fresh executor there, its GPU calls would wait
    for ever."""
    import os
    from serving.onnx_runtime import gpu_thread
    assert gpu_thread().submit(lambda: 1).result() == 1
    pid = os.fork()
    if pid == 0:
        try:
            os._exit(0 if gpu_thread().submit(lambda: 2).result(timeout=10) == 2 else 1)
        except BaseException:
            os._exit(1)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0


def test_computed_pixels_are_the_windows_areas():
    from serving.tiling import computed_pixels, tile_plan
    assert computed_pixels(100, 90, 128, 40) == 100 * 90  # one window: the image itself
    for height, width in [(300, 300), (209, 500), (1, 2000)]:
        plan = tile_plan(height, width, 128, 40)
        assert computed_pixels(height, width, 128, 40) == sum((y1 - y0) * (x1 - x0)
                                                              for (y0, y1, _, _), (x0, x1, _, _) in plan)
    assert computed_pixels(300, 300, 128, 40) == (3 * 208) ** 2
