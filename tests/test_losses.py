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
