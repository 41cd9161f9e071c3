"""The GAN phase's parts: ESRGAN's relativistic loss, the discriminator's accuracy, feature matching, the
mean-colour term, Real-ESRGAN's sharpened target, the warm-up, the moving average and ESRGAN's interpolation."""

import json

import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import TINY_MODEL, tiny_run_args
from training import losses


def _ce(logits, label):
    return float(tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.fill(tf.shape(logits), label),
                                                                         logits=logits)))


def test_relativistic_losses_compare_each_side_with_the_others_mean():
    real = tf.constant([[[[2.0]]], [[[0.0]]]])  # (N, 1, 1, 1) patch logits, means: real 1, fake −1
    fake = tf.constant([[[[-1.0]]], [[[-1.0]]]])
    d = losses.relativistic_discriminator_loss(real, fake).numpy()
    g = losses.relativistic_generator_adversarial(real, fake).numpy()
    # Example 0: D_Ra(real) = 2 − (−1) = 3, D_Ra(fake) = −1 − 1 = −2.
    assert d[0] == pytest.approx(_ce(tf.constant(3.0), 1.0) + _ce(tf.constant(-2.0), 0.0), rel=1e-5)
    assert g[0] == pytest.approx(_ce(tf.constant(3.0), 0.0) + _ce(tf.constant(-2.0), 1.0), rel=1e-5)
    # A discriminator that cannot tell them apart is at 2 ln 2 on both sides.
    same = tf.zeros([3, 2, 2, 1])
    assert losses.relativistic_discriminator_loss(same, same).numpy() == pytest.approx([2 * np.log(2)] * 3)


def test_accuracy_reads_the_decision_each_formulation_makes():
    real, fake = tf.constant([[[[3.0]]], [[[-1.0]]]]), tf.constant([[[[0.5]]], [[[0.5]]]])
    vanilla, ragan = losses.GAN_LOSSES["vanilla"], losses.GAN_LOSSES["ragan"]
    r, f = vanilla.decision_logits(real, fake)
    assert losses.accuracy(r, real=True).numpy().tolist() == [1.0, 0.0]
    assert losses.accuracy(f, real=False).numpy().tolist() == [0.0, 0.0]  # 0.5 > 0: called real
    r, f = ragan.decision_logits(real, fake)  # real mean 1, fake mean 0.5: relative to the other side
    assert losses.accuracy(r, real=True).numpy().tolist() == [1.0, 0.0]
    assert losses.accuracy(f, real=False).numpy().tolist() == [1.0, 1.0]


def test_feature_matching_is_relative_per_layer_and_zero_for_equal_features():
    real = [tf.ones([2, 4, 4, 3]), 10.0 * tf.ones([2, 2, 2, 5])]
    assert losses.feature_matching(real, real).numpy() == pytest.approx([0.0, 0.0])
    fake = [tf.zeros([2, 4, 4, 3]), 5.0 * tf.ones([2, 2, 2, 5])]
    assert losses.feature_matching(real, fake).numpy() == pytest.approx([0.75, 0.75], rel=1e-5)  # (1 + 0.5) / 2


def test_mean_colour_difference_sees_a_cast_and_ignores_texture():
    rng = np.random.default_rng(0)
    lr = tf.constant(rng.uniform(-0.5, 0.5, (1, 8, 8, 3)), tf.float32)
    sr = tf.image.resize(lr, (32, 32), method="nearest")
    assert losses.mean_colour_difference(lr, sr).numpy() == pytest.approx([0.0], abs=1e-6)
    textured = sr + tf.constant(np.tile([[0.2, -0.2], [-0.2, 0.2]], (16, 16))[None, :, :, None], tf.float32)
    assert losses.mean_colour_difference(lr, textured).numpy() == pytest.approx([0.0], abs=1e-6)
    cast = sr + tf.constant([0.1, 0.0, -0.05])
    assert losses.mean_colour_difference(lr, cast).numpy() == pytest.approx([0.15], abs=1e-6)


def test_the_sharpened_target_steepens_an_edge_and_leaves_flat_areas():
    edge = tf.constant(np.repeat(np.where(np.arange(16) < 8, -0.5, 0.5)[None, :], 16, 0)[None, :, :, None]
                       .repeat(3, -1), tf.float32)
    sharpened = losses.SharpenedTarget(losses.pixel_l1, amount=0.5).sharpen(edge).numpy()
    assert sharpened[0, 8, 7, 0] < -0.5 and sharpened[0, 8, 8, 0] > 0.5  # overshoot on both sides of the edge
    assert sharpened[0, 8, 0, 0] == pytest.approx(-0.5, abs=1e-4)  # far from it: unchanged
    assert losses.SharpenedTarget(losses.pixel_l1, 0.5)(edge, edge).numpy()[0] > 0  # SR = HR is no longer perfect


def test_the_gan_warmup_ramps_only_the_gan_phase():
    from training.schedule import PretrainThenGan
    rate = PretrainThenGan(1e-3, 10, 1e-4, cosine=False, gan_warmup=4)
    values = [float(rate(step)) for step in (0, 9, 10, 11, 13, 50)]
    assert values == pytest.approx([1e-3, 1e-3, 0.25e-4, 0.5e-4, 1e-4, 1e-4])


@pytest.mark.slow
def test_a_relativistic_gan_run_logs_the_discriminator_and_exports_its_average(tmp_path, cache_dir):
    """Every GAN-phase option at once on a tiny run: the discriminator's accuracy is logged, the moving average
    is checkpointed and is what export loads, and the run's objective travels with it."""
    from training.checkpointing import load_generator
    from training.config import config_from_args
    from training.run import train
    out = tmp_path / "run"
    train(config_from_args(tiny_run_args(out, cache_dir, "--gan-loss", "ragan", "--adversarial-weight", "1e-2",
                                         "--feature-matching", "1", "--colour-weight", "1", "--ema-decay", "0.5",
                                         "--gan-warmup", "2", "--content-loss", "l1", "--sharpen-target", "0.5",
                                         "--disc-learning-rate", "1e-3", "--objective", "perception")))
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    gan = [r for r in records if r["kind"] == "train" and "d_real_accuracy" in r]
    assert gan and all(0 <= r["d_real_accuracy"] <= 1 and 0 <= r["d_fake_accuracy"] <= 1 for r in gan)
    assert all(r["feature_matching_loss"] > 0 for r in gan)
    checkpoint = tf.train.latest_checkpoint(str(out / "checkpoints"))
    reader = tf.train.load_checkpoint(checkpoint)
    averaged = {n for n in reader.get_variable_to_shape_map() if n.startswith("generator_ema/")}
    assert averaged
    loaded = load_generator(checkpoint)
    assert loaded.objective == "perception"
    # Export reads the average, not the last step's weights: they differ after GAN steps with decay 0.5.
    def total(prefix):
        return sum(float(np.abs(reader.get_tensor(n)).sum()) for n in reader.get_variable_to_shape_map()
                   if n.startswith(prefix) and "OPTIMIZER_SLOT" not in n)
    loaded_total = sum(float(np.abs(w).sum()) for w in loaded.model.get_weights())
    assert loaded_total == pytest.approx(total("generator_ema/"), rel=1e-6)
    assert loaded_total != pytest.approx(total("generator/"), rel=1e-6)


def test_interpolation_at_the_ends_gives_each_model_exactly(tmp_path):
    from core.cli import UserError
    from training.checkpointing import TrainedGenerator
    from training.interpolation import interpolate
    from training.model import ModelSpec, build_generator
    spec = ModelSpec(channels=8, residual_blocks=1)
    a, b = (TrainedGenerator(build_generator(spec), spec, name, step) for name, step in (("a", 1), ("b", 2)))
    lr = tf.constant(np.random.default_rng(1).uniform(-1, 1, (1, 12, 12, 3)), tf.float32)
    for alpha, model in ((0.0, a), (1.0, b)):
        blended = interpolate(a, b, alpha)
        assert np.array_equal(blended.model(lr).numpy(), model.model(lr).numpy())
    half = interpolate(a, b, 0.5).model.get_weights()
    assert np.allclose(half[0], (a.model.get_weights()[0] + b.model.get_weights()[0]) / 2)
    with pytest.raises(UserError, match="between 0"):
        interpolate(a, b, 1.5)
    other = ModelSpec(channels=4, residual_blocks=1)
    with pytest.raises(UserError, match="same architecture"):
        interpolate(a, TrainedGenerator(build_generator(other), other, "c", 0), 0.5)


def test_the_gan_preset_starts_from_the_shipped_srresnet():
    from training.config import config_from_args
    config = config_from_args([*TINY_MODEL, "--preset", "photos-gan", "--crop-size", "32"])
    assert config.disc_spectral_norm and config.objective == "perception" and config.pretrain_steps == 0
    assert config.ema_decay and config.init_generator.name == "srresnet.weights.h5"


def test_a_spectrally_normalised_discriminator_keeps_the_articles_shape_and_layer_names():
    import keras
    from training.model import ModelSpec, build_discriminator
    spec = ModelSpec(disc_channels=4, disc_dense=8)
    plain, normed = build_discriminator(spec), build_discriminator(spec, spectral_norm=True)
    images = tf.zeros([2, 32, 32, 3])
    assert normed(images).shape == plain(images).shape == (2, 2, 2, 1)
    wrapped = [layer for layer in normed.layers if isinstance(layer, keras.layers.SpectralNormalization)]
    assert len(wrapped) == 10  # 8 convs, 2 dense
    assert normed.get_layer("lrelu8") is not None  # feature matching taps the same names
