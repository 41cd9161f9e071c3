import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tests.helpers import write_image
from training.data import pipeline, sources
from training.data.images import BadImage, read_rgb


def _celeba(tmp_path, rng, count=9):
    """A small img_align_celeba: 178×218 JPEGs named like CelebA's, plus a few bad files."""
    folder = tmp_path / "img_align_celeba"
    for i in range(1, count + 1):
        write_image(folder / f"{i:06d}.jpg", rng.integers(0, 256, (218, 178, 3)).astype(np.uint8), quality=95)
    return folder


def test_celeba_is_centre_cropped_not_resized_and_last_five_held_out(tmp_path, rng):
    folder = _celeba(tmp_path, rng)
    manifest = sources.prepare("celeba", folder, tmp_path / "cache", crop_size=128)
    assert [os.path.basename(p) for p in manifest.test] == [f"{i:06d}.png" for i in range(5, 10)]
    assert [os.path.basename(p) for p in manifest.train] == [f"{i:06d}.png" for i in range(1, 5)]
    original = np.asarray(Image.open(folder / "000007.jpg").convert("RGB"))
    crop = np.asarray(Image.open(manifest.test[2]))
    assert crop.shape == (128, 128, 3)
    np.testing.assert_array_equal(crop, original[45:173, 25:153])  # (218-128)/2, (178-128)/2


def test_celeba_takes_the_first_n_sorted_files(tmp_path, rng):
    folder = _celeba(tmp_path, rng, count=12)
    manifest = sources.prepare("celeba", folder, tmp_path / "cache", crop_size=64, limit=10)
    assert os.path.basename(manifest.test[-1]) == "000010.png"
    assert len(manifest.train) + len(manifest.test) == 10


def test_bad_files_are_skipped_and_counted(tmp_path, rng):
    folder = _celeba(tmp_path, rng, count=7)
    (folder / "000008.jpg").write_bytes(b"not a jpeg at all")
    (folder / "000009.jpg").write_bytes(b"")
    write_image(folder / "000010.jpg", rng.integers(0, 256, (60, 60, 3)).astype(np.uint8))  # too small
    write_image(folder / "000011.png", rng.integers(0, 256, (218, 178)).astype(np.uint8))  # grey: converted
    good = folder / "000006.jpg"
    (folder / "000012.jpg").write_bytes(good.read_bytes()[: good.stat().st_size // 2])  # truncated
    manifest = sources.prepare("celeba", folder, tmp_path / "cache", crop_size=128)
    report = manifest.report
    assert report.used == 8 and report.converted == 1
    assert report.skipped == {"unreadable": 2, "empty file": 1, "smaller than 128×128": 1}
    assert "000011.png" in manifest.test[-1]
    assert "skipped 4" in report.summary()


def test_read_rgb_converts_alpha_and_palette(tmp_path, rng):
    rgba = rng.integers(0, 256, (40, 40, 4)).astype(np.uint8)
    rgba[..., 3] = 0  # fully transparent: composited on white
    rgb, converted = read_rgb(write_image(tmp_path / "a.png", rgba))
    assert converted and rgb.shape == (40, 40, 3) and (rgb == 255).all()
    palette = Image.fromarray(rng.integers(0, 256, (40, 40, 3)).astype(np.uint8)).convert("P")
    palette.save(tmp_path / "p.gif")
    assert read_rgb(tmp_path / "p.gif")[0].shape == (40, 40, 3)
    (tmp_path / "notes.txt.png").write_text("hello")
    with pytest.raises(BadImage):
        read_rgb(tmp_path / "notes.txt.png")


def test_folder_source_keeps_decodable_files_and_converts_the_rest(tmp_path, rng):
    folder = tmp_path / "photos"
    for i in range(6):
        write_image(folder / f"rgb{i}.jpg", rng.integers(0, 256, (70, 90, 3)).astype(np.uint8))
    write_image(folder / "sub" / "grey.png", rng.integers(0, 256, (80, 80)).astype(np.uint8))
    write_image(folder / "tiff.tif", rng.integers(0, 256, (80, 80, 3)).astype(np.uint8))
    (folder / "readme.md").write_text("not an image")
    manifest = sources.prepare("folder", folder, tmp_path / "cache", crop_size=64)
    assert manifest.report.used == 8 and manifest.fixed_size is None
    assert str(folder / "rgb0.jpg") in manifest.train  # used where it is
    assert all(Image.open(p).size == (64, 64) for p in manifest.test)
    converted = [p for p in manifest.train + manifest.test if str(tmp_path / "cache") in p]
    assert converted, "the grey PNG and the TIFF should be stored converted in the cache"


def test_prepared_cache_is_reused(tmp_path, rng):
    folder = _celeba(tmp_path, rng, count=6)
    first = sources.prepare("celeba", folder, tmp_path / "cache", crop_size=64)
    stamp = os.stat(first.train[0]).st_mtime_ns
    second = sources.prepare("celeba", folder, tmp_path / "cache", crop_size=64)
    assert second == first and os.stat(second.train[0]).st_mtime_ns == stamp


def test_demo_set_ships_with_scikit_image(cache_dir):
    manifest = sources.prepare("demo", None, cache_dir, crop_size=128)
    assert len(manifest.test) == 5 and len(manifest.train) >= 100
    assert not set(manifest.train) & set(manifest.test)
    assert {os.path.basename(p).split("_r")[0] for p in manifest.test} == {
        "astronaut", "chelsea", "coffee", "rocket", "motorcycle_left"}


def test_pipeline_batches_and_degradation(cache_dir):
    manifest = sources.prepare("demo", None, cache_dir, crop_size=128)
    config = pipeline.PipelineConfig(crop_size=64, augment=False)
    lr, hr = next(iter(pipeline.training_dataset(manifest.train[:10], config, 3, manifest.fixed_size)))
    assert lr.shape == (3, 16, 16, 3) and hr.shape == (3, 64, 64, 3)
    assert float(tf.reduce_min(hr)) >= -1 and float(tf.reduce_max(hr)) <= 1
    hr_255 = tf.round((hr + 1) * 127.5)
    expected = tf.round(tf.clip_by_value(tf.image.resize(hr_255, (16, 16), "bicubic"), 0, 255)) / 127.5 - 1
    np.testing.assert_allclose(lr, expected, atol=1e-6)
    # On the uint8 grid, as a deployed model's inputs are.
    np.testing.assert_allclose((lr + 1) * 127.5, np.round((lr + 1) * 127.5), atol=1e-4)


def test_augmentation_keeps_values_in_range(cache_dir):
    manifest = sources.prepare("demo", None, cache_dir, crop_size=128)
    config = pipeline.PipelineConfig(crop_size=32, augment=True)
    for lr, hr in pipeline.training_dataset(manifest.train[:8], config, 4, manifest.fixed_size).take(3):
        for x in (lr, hr):
            assert -1.0 <= float(tf.reduce_min(x)) and float(tf.reduce_max(x)) <= 1.0


@pytest.mark.slow
def test_antialiased_downsampling_differs(cache_dir):
    manifest = sources.prepare("demo", None, cache_dir, crop_size=128)
    plain = pipeline.held_out_pairs(manifest.test, pipeline.PipelineConfig(antialias=False))
    smooth = pipeline.held_out_pairs(manifest.test, pipeline.PipelineConfig(antialias=True))
    assert plain[0].shape == (5, 32, 32, 3) and plain[1].shape == (5, 128, 128, 3)
    np.testing.assert_array_equal(plain[1], smooth[1])
    assert np.abs(plain[0].astype(int) - smooth[0]).mean() > 0.5
