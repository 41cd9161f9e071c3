import keras
import numpy as np
import pytest
import tensorflow as tf

from training import losses


def test_discriminator_loss_at_zero_logits_is_two_log_two():
    zeros = tf.zeros((3, 2, 2, 1))
    np.testing.assert_allclose(losses.discriminator_loss(zeros, zeros), [2 * np.log(2)] * 3, rtol=1e-6)


def test_adversarial_loss_rewards_fooling_the_discriminator():
    confident_real = tf.fill((1, 2, 2, 1), 10.0)
    confident_fake = tf.fill((1, 2, 2, 1), -10.0)
    assert float(losses.generator_adversarial(confident_real)[0]) < 1e-3
    assert float(losses.generator_adversarial(confident_fake)[0]) == pytest.approx(10.0, abs=1e-3)


def test_pixel_mse_is_per_example():
    hr = tf.zeros((2, 4, 4, 3))
    sr = tf.concat([tf.zeros((1, 4, 4, 3)), tf.fill((1, 4, 4, 3), 0.5)], axis=0)
    np.testing.assert_allclose(losses.pixel_mse(hr, sr), [0.0, 0.25])


@pytest.mark.parametrize("imagenet", [False, True])
def test_vgg_content_loss(imagenet):
    vgg = keras.applications.VGG19(include_top=False, weights=None, input_shape=(None, None, 3))
    features = keras.Model(vgg.input, vgg.get_layer("block5_conv4").output)
    loss = losses.VggContentLoss(features, imagenet_preprocessing=imagenet)
    hr = tf.random.uniform((2, 32, 32, 3), -1, 1)
    np.testing.assert_allclose(loss(hr, hr), [0.0, 0.0], atol=1e-8)
    assert loss(hr, -hr).shape == (2,)
    assert float(tf.reduce_min(loss(hr, -hr))) > 0


def test_periodic_pattern_sees_a_pixel_shuffle_grid_and_nothing_else():
    rng = np.random.default_rng(0)
    hr = tf.constant(rng.uniform(-1, 1, (2, 96, 96, 3)).astype(np.float32))
    grid = np.zeros((96, 96, 3), np.float32)
    grid[1::4, 2::4] = 0.2  # one sub-pixel position of every 4×4 cell a little brighter: the GAN's grid
    drifting = np.zeros_like(grid)
    drifting[:48, 1::4] = 0.2  # in one half of the image only, its phase elsewhere: caught block by block
    drifting[48:, 3::4] = 0.2
    assert np.allclose(losses.periodic_pattern(hr, hr, 4), 0)
    assert np.allclose(losses.periodic_pattern(hr, hr + 0.1, 4), 0, atol=1e-6)  # a cast is not a pattern
    on_grid = losses.periodic_pattern(hr, hr + grid, 4).numpy()
    assert on_grid.shape == (2,) and (on_grid > 0.005).all()
    assert (losses.periodic_pattern(hr, hr + drifting, 4).numpy() > 0.005).all()
    smooth = tf.constant(np.linspace(-1, 1, 96, dtype=np.float32)[None, :, None, None] * np.ones((2, 96, 96, 3),
                                                                                                  np.float32))
    # A ramp is not one either (but for the 3×3 mean's edge at the image's border).
    assert (losses.periodic_pattern(hr, hr + smooth, 4).numpy() < on_grid / 10).all()
