import sys

import numpy as np
import pytest
import tensorflow as tf
import keras

from tests.helpers import REPO
from training.model import ModelSpec, PixelShuffle, build_discriminator, build_generator

TINY = ModelSpec(channels=8, residual_blocks=2, disc_channels=4, disc_dense=8)


@pytest.mark.parametrize("shape", [(1, 8, 8), (2, 32, 32), (1, 40, 56), (3, 17, 23)])
def test_generator_upscales_any_size_by_four(shape):
    g = build_generator(TINY)
    n, h, w = shape
    out = g(np.random.uniform(-1, 1, (n, h, w, 3)).astype("float32"))
    assert out.shape == (n, 4 * h, 4 * w, 3)
    assert float(tf.reduce_max(tf.abs(out))) <= 1.0  # tanh output


@pytest.mark.parametrize("scale", [2, 8])
def test_generator_other_scales(scale):
    g = build_generator(ModelSpec(scale=scale, channels=4, residual_blocks=1))
    assert g(np.zeros((1, 5, 6, 3), "float32")).shape == (1, 5 * scale, 6 * scale, 3)


def test_full_size_generator_parameter_count():
    # Counted by hand from the article: conv 9×9 3→64 (15 616) + PReLU 64 + 16 × (2 × 3×3 64→64 without bias
    # + PReLU 64 = 73 792) + conv 3×3 64→64 (36 928) + 2 × (conv 3×3 64→256 (147 712) + PReLU 64)
    # + conv 9×9 64→3 (15 555) = 1 544 387.
    assert build_generator().count_params() == 1_544_387


def test_prelu_is_shared_over_height_and_width():
    g = build_generator()
    slopes = [layer.weights[0].shape for layer in g.layers if isinstance(layer, keras.layers.PReLU)]
    assert len(slopes) == 1 + 16 + 2
    assert all(tuple(s) == (1, 1, 64) for s in slopes)


def test_generator_has_no_lambda_layers():
    assert not any(isinstance(layer, keras.layers.Lambda) for layer in build_generator(TINY).layers)


def test_discriminator_patch_head_gives_one_logit_per_patch():
    d = build_discriminator()
    assert d(np.zeros((2, 128, 128, 3), "float32")).shape == (2, 8, 8, 1)
    assert build_discriminator(TINY)(np.zeros((1, 64, 96, 3), "float32")).shape == (1, 4, 6, 1)


def test_discriminator_flatten_head_gives_one_logit_per_image():
    spec = ModelSpec(disc_channels=4, disc_dense=8, disc_head="flatten")
    assert build_discriminator(spec, hr_size=32)(np.zeros((3, 32, 32, 3), "float32")).shape == (3, 1)


def _article():
    """benchmarks/article_reference.py: the article's code as written."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    import article_reference
    return article_reference


def test_pixel_shuffle_is_the_articles_up_to_a_channel_permutation():
    # depth_to_space (DCR) reads sub-pixel (i, j) of output channel k from input channel (i·r + j)·C + k; the
    # article's shuffler reads it from k·r² + i·r + j. The conv before it learns either order.
    x = tf.random.uniform((2, 3, 5, 16))
    r, c_out = 2, 4
    dcr_to_article = [(i * r + j) * c_out + k for k in range(c_out) for i in range(r) for j in range(r)]
    ours = PixelShuffle(2)(x)
    article = _article().pixelShuffler(tf.gather(x, dcr_to_article, axis=3))
    np.testing.assert_array_equal(ours.numpy(), article.numpy())


def test_generator_round_trips_through_keras_serialisation(tmp_path):
    g = build_generator(TINY)
    path = tmp_path / "g.keras"
    g.save(path)
    loaded = keras.saving.load_model(path)
    x = np.random.uniform(-1, 1, (1, 9, 7, 3)).astype("float32")
    np.testing.assert_allclose(loaded(x), g(x), atol=1e-6)


def test_model_spec_json_round_trip(tmp_path):
    spec = ModelSpec(channels=16, residual_blocks=3, disc_head="flatten")
    spec.save(tmp_path)
    assert ModelSpec.load(tmp_path) == spec
    with pytest.raises(ValueError):
        ModelSpec(scale=3)


def test_forward_flops_of_the_article_generator():
    from training.model.flops import forward_flops
    # Multiply-adds at 32×32 → 128×128: conv_in 1024·9·9·3·64, 32 residual convs 1024·9·64·64, conv_mid
    # 1024·9·64·64, up0 1024·9·64·256, up1 4096·9·64·256, conv_out 16384·9·9·64·3.
    macs = 1024 * 81 * 192 + 33 * 1024 * 36864 + 1024 * 147456 + 4096 * 147456 + 16384 * 81 * 192
    assert forward_flops(build_generator(), 32, 32) == 2 * macs  # ≈ 4.5 GFLOP
    assert forward_flops(build_generator(), 64, 64) == 4 * 2 * macs


def test_receptive_radius_and_export_record_defaults(tmp_path):
    """The article's generator reaches 40 input pixels either side; a version without export.json reads as
    the article's, tiled at the default tile."""
    from core.export_record import ExportRecord
    from core.model_spec import DEFAULT_TILE
    assert ModelSpec().receptive_radius == 40
    assert ModelSpec(residual_blocks=2).receptive_radius == 12  # 4 + 4 + 1 + 1.5 + 1, rounded up
    assert ExportRecord.load(tmp_path).window_plan() == (4, DEFAULT_TILE, 40)
    record = ExportRecord(ModelSpec(channels=8, residual_blocks=2), version=3,
                          saved_model_tiling={"tile": 24, "overlap": 12, "scale": 4, "window": 48})
    record.save(tmp_path)
    assert ExportRecord.load(tmp_path) == record and record.window_plan() == (4, 24, 12)
