"""The article's losses (section 5.5), per example so that distribution strategies can average them."""

import keras
import tensorflow as tf

ADVERSARIAL_WEIGHT = 1e-3  # generator loss = content + 1e-3 × adversarial


def _mean_per_example(x):
    return tf.reduce_mean(tf.reshape(x, [tf.shape(x)[0], -1]), axis=1)


def pixel_mse(hr, sr):
    """Per-example mean squared error in [-1, 1] pixel space: the article's alternative content loss."""
    return _mean_per_example(tf.math.squared_difference(hr, sr))


def pixel_l1(hr, sr):
    """Per-example mean absolute error in [-1, 1] pixel space (EDSR's and BasicSR's SRResNet pre-training)."""
    return _mean_per_example(tf.abs(hr - sr))


PIXEL_LOSSES = {"mse": pixel_mse, "l1": pixel_l1}


class LowResolutionConsistency:
    """Per-example L1 between the output degraded as training degrades HR (bicubic ×1/scale, antialiased or
    not) and the LR input, in [-1, 1]: ties the output's low frequencies, its colour above all, to the input
    (the "LR consistency" of the SR literature) instead of to what the training photographs looked like."""

    def __init__(self, antialias: bool):
        self.antialias = antialias

    def __call__(self, lr, sr):
        down = tf.image.resize(tf.cast(sr, tf.float32), tf.shape(lr)[1:3], method="bicubic",
                               antialias=self.antialias)
        return _mean_per_example(tf.abs(down - tf.cast(lr, tf.float32)))


def _imagenet_input(x):
    # [-1, 1] RGB → VGG's own input: 0–255 BGR minus the ImageNet channel means.
    rgb = (x + 1.0) * 127.5
    return tf.reverse(rgb, axis=[-1]) - tf.constant([103.939, 116.779, 123.68], dtype=x.dtype)


class VggContentLoss:
    """Per-example MSE of VGG19 `block5_conv4` features of HR and SR.

    HR and SR go through VGG19 in separate calls: in one concatenated batch the backward pass would run
    over the HR half too, a third more work for a gradient that is thrown away.

    The article feeds the [-1, 1] images to VGG19 as they are; `imagenet_preprocessing` feeds VGG the
    input it was trained on instead (the SRGAN paper's choice).
    """

    def __init__(self, features: keras.Model, imagenet_preprocessing: bool = False):
        self.features = features
        self.imagenet_preprocessing = imagenet_preprocessing

    def _features(self, images):
        if self.imagenet_preprocessing:
            images = _imagenet_input(images)
        return tf.cast(self.features(images, training=False), tf.float32)  # fp16 under mixed precision

    def __call__(self, hr, sr):
        hr_features = tf.stop_gradient(self._features(hr))
        return _mean_per_example(tf.math.squared_difference(hr_features, self._features(sr)))


def _sigmoid_ce(labels_like, logits, label: float):
    return _mean_per_example(tf.nn.sigmoid_cross_entropy_with_logits(
        labels=tf.fill(tf.shape(labels_like), tf.constant(label, logits.dtype)), logits=logits))


def generator_adversarial(fake_logits):
    """Sigmoid cross-entropy of D(SR) against ones, averaged over patches."""
    return _sigmoid_ce(fake_logits, fake_logits, 1.0)


def discriminator_loss(real_logits, fake_logits):
    """CE(D(HR), 1) + CE(D(SR), 0), per example."""
    return _sigmoid_ce(real_logits, real_logits, 1.0) + _sigmoid_ce(fake_logits, fake_logits, 0.0)
