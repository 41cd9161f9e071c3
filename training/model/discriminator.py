"""The article's SRGAN discriminator (section 5.4)."""

import keras

from core.model_spec import ModelSpec

_LEAKY_SLOPE = 0.2  # tf.nn.leaky_relu's default, which the article uses


def build_discriminator(spec: ModelSpec = ModelSpec(), hr_size: int | None = None,
                        name: str = "discriminator", spectral_norm: bool = False) -> keras.Model:
    """HR image in [-1, 1] → logits.

    Eight 3×3 convs (64, 64/2, 128, 128/2, 256, 256/2, 512, 512/2 at the article's width), each with leaky
    ReLU, then Dense 1024 + leaky ReLU and Dense 1. With the "patch" head the Dense layers act on each
    position of the final (H/16 × W/16) map as in the article, giving one logit per patch; "flatten" gives
    one logit per image and needs `hr_size`. `spectral_norm` wraps every conv and dense layer in Keras'
    SpectralNormalization (Miyato et al., ICLR 2018; Real-ESRGAN's discriminator): each layer's largest singular
    value held at 1, so the discriminator cannot sharpen its decisions without bound and the generator's
    adversarial gradients stay moderate.
    """
    def normed(layer):
        if not spectral_norm:
            return layer
        return keras.layers.SpectralNormalization(layer, dtype=layer.dtype_policy, name=f"sn_{layer.name}")

    if spec.disc_head == "flatten" and hr_size is None:
        raise ValueError("the flatten head needs a fixed hr_size")
    side = hr_size if spec.disc_head == "flatten" else None
    x = hr = keras.Input(shape=(side, side, 3), name="hr")
    widths = [spec.disc_channels * m for m in (1, 1, 2, 2, 4, 4, 8, 8)]
    for i, width in enumerate(widths):
        x = normed(keras.layers.Conv2D(width, 3, strides=1 + i % 2, padding="same", name=f"conv{i + 1}"))(x)
        x = keras.layers.LeakyReLU(_LEAKY_SLOPE, name=f"lrelu{i + 1}")(x)
    if spec.disc_head == "flatten":
        x = keras.layers.Flatten(name="flatten")(x)
    x = normed(keras.layers.Dense(spec.disc_dense, name="fc1"))(x)
    x = keras.layers.LeakyReLU(_LEAKY_SLOPE, name="lrelu_fc1")(x)
    logits = normed(keras.layers.Dense(1, dtype="float32", name="logits"))(x)
    return keras.Model(hr, logits, name=name)
