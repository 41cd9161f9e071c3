"""The article's losses (section 5.5), per example so that distribution strategies can average them."""

import dataclasses

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


class GaussianBlur:
    """A Gaussian blur of σ = `sigma` per channel, reflected at the edges, on NHWC float images."""

    def __init__(self, sigma: float = 1.0):
        radius = max(1, round(3 * sigma))
        taps = tf.exp(-0.5 * (tf.range(-radius, radius + 1, dtype=tf.float32) / sigma) ** 2)
        taps /= tf.reduce_sum(taps)
        self.kernel = tf.tile((taps[:, None] * taps[None, :])[:, :, None, None], [1, 1, 3, 1])  # depthwise
        self.radius = radius

    def __call__(self, images):
        padded = tf.pad(images, [[0, 0], [self.radius] * 2, [self.radius] * 2, [0, 0]], mode="REFLECT")
        return tf.nn.depthwise_conv2d(padded, tf.cast(self.kernel, images.dtype), [1, 1, 1, 1], "VALID")


class SharpenedTarget:
    """Real-ESRGAN's sharpened ground truth: the pixel loss of the GAN phase compares SR with HR passed through
    an unsharp mask (HR + amount × (HR − Gaussian-blurred HR), σ = `sigma`), so that it pulls toward crisper
    edges than HR's instead of toward the blur that averaging many plausible HRs gives."""

    def __init__(self, loss, amount: float, sigma: float = 1.0):
        self.loss, self.amount, self.blur = loss, amount, GaussianBlur(sigma)

    def sharpen(self, hr):
        hr = tf.cast(hr, tf.float32)
        return tf.clip_by_value(hr + self.amount * (hr - self.blur(hr)), -1.0, 1.0)

    def __call__(self, hr, sr):
        return self.loss(self.sharpen(hr), tf.cast(sr, tf.float32))


class HighPass:
    """The image minus its Gaussian blur (σ = `sigma`): what a discriminator judges with --disc-high-pass, so that
    it tells real from fake by texture and detail alone (frequency separation, Fritsche et al., ICCVW 2019), and
    the low frequencies stay the content and consistency terms' business."""

    def __init__(self, sigma: float = 1.0):
        self.blur = GaussianBlur(sigma)

    def __call__(self, images):
        return images - self.blur(images)


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


def periodic_pattern(hr, sr, scale: int, block: int = 32):
    """Per example, the L1 between SR's and HR's pattern of period `scale` (what a pixel shuffle draws when its
    sub-pixel outputs disagree: the GAN's grid on leaves, fur and water). The pattern is the image's high-pass
    (minus its 3×3 mean) averaged, within each `block`-pixel square, at each of the scale×scale positions of a
    cell, less the block's own mean: local, since the grid's phase drifts across a photograph. A natural HR has
    almost none; SR is pulled to HR's, whatever the discriminator rewards."""
    def pattern(x):
        x = tf.cast(x, tf.float32)
        high = x - tf.nn.avg_pool2d(x, 3, 1, "SAME")
        shape = tf.shape(high)
        rows, cols = shape[1] // block, shape[2] // block
        cells = tf.reshape(high[:, :rows * block, :cols * block],
                           [shape[0], rows, block // scale, scale, cols, block // scale, scale, shape[3]])
        phases = tf.reduce_mean(cells, axis=[2, 5])  # [b, rows, scale, cols, scale, c]
        return phases - tf.reduce_mean(phases, axis=[2, 4], keepdims=True)
    return _mean_per_example(tf.abs(pattern(sr) - pattern(hr)))


def mean_colour_difference(lr, sr):
    """Per example, the sum over RGB of |mean(SR) − mean(LR)| in [-1, 1]: the output's average colour against the
    input's, which bicubic downsampling keeps. Unlike the per-pixel L1 above, whose gradients for a uniform cast
    mostly cancel among the pixels' noise, its gradient points the whole image along the cast."""
    means = [tf.reduce_mean(tf.cast(x, tf.float32), axis=[1, 2]) for x in (sr, lr)]
    return tf.reduce_sum(tf.abs(means[0] - means[1]), axis=-1)


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


def _relative(logits, others):
    # ESRGAN's relativistic average: how much more real an image looks than the other kind does on average
    # (over the replica's batch and patches).
    return logits - tf.reduce_mean(others)


def relativistic_generator_adversarial(real_logits, fake_logits):
    """ESRGAN's RaGAN generator loss: CE(D_Ra(HR, SR), 0) + CE(D_Ra(SR, HR), 1), per example. The real half
    also carries a gradient to the generator, through the batch mean of D(SR)."""
    return (_sigmoid_ce(real_logits, _relative(real_logits, fake_logits), 0.0)
            + _sigmoid_ce(fake_logits, _relative(fake_logits, real_logits), 1.0))


def relativistic_discriminator_loss(real_logits, fake_logits):
    """ESRGAN's RaGAN discriminator loss: CE(D_Ra(HR, SR), 1) + CE(D_Ra(SR, HR), 0), per example."""
    return (_sigmoid_ce(real_logits, _relative(real_logits, fake_logits), 1.0)
            + _sigmoid_ce(fake_logits, _relative(fake_logits, real_logits), 0.0))


def feature_matching(real_features, fake_features):
    """Per example, the mean over layers of mean |D_l(SR) − D_l(HR)| / mean |D_l(HR)|, HR's side held fixed: each
    layer's distance relative to its own activations, so that layers (and a discriminator whose activations grow
    as it learns) weigh alike."""
    distances = []
    for real, fake in zip(real_features, fake_features):
        real = tf.stop_gradient(tf.cast(real, tf.float32))
        distances.append(_mean_per_example(tf.abs(tf.cast(fake, tf.float32) - real))
                         / (_mean_per_example(tf.abs(real)) + 1e-6))
    return tf.add_n(distances) / len(distances)


@dataclasses.dataclass(frozen=True)
class Adversarial:
    """One GAN formulation: its two losses and the logits its accuracy is read from (> 0 means "real")."""

    generator: object  # (real_logits, fake_logits) -> per-example loss
    discriminator: object  # (real_logits, fake_logits) -> per-example loss
    relativistic: bool

    def decision_logits(self, real_logits, fake_logits):
        if self.relativistic:
            return _relative(real_logits, fake_logits), _relative(fake_logits, real_logits)
        return real_logits, fake_logits


GAN_LOSSES = {
    # The article's (and the SRGAN paper's) standard GAN.
    "vanilla": Adversarial(lambda real, fake: generator_adversarial(fake), discriminator_loss, relativistic=False),
    # ESRGAN's relativistic average GAN (Wang et al., 2018, section 3.2).
    "ragan": Adversarial(relativistic_generator_adversarial, relativistic_discriminator_loss, relativistic=True),
}


def accuracy(logits, real: bool):
    """Per example, the share of the discriminator's patches that it classes right (logit > 0: real)."""
    right = logits > 0 if real else logits < 0
    return _mean_per_example(tf.cast(right, tf.float32))
