"""The article's SRGAN generator (section 5.3), fully convolutional: any H×W in, scale·H × scale·W out."""

import keras

from core.model_spec import ModelSpec
from training.model.layers import PixelShuffle


def _prelu(name: str):
    # One slope per channel, shared over H and W: the article's PReLU(shared_axes=[1, 2]), and what keeps
    # the generator independent of the input size.
    return keras.layers.PReLU(shared_axes=[1, 2], name=name)


def _residual_block(x, channels: int, index: int, init_scale: float):
    """3×3 conv (no bias) → PReLU → 3×3 conv (no bias) → add the input; no batch norm, as in the article.

    `init_scale` multiplies the second conv's initial weights (Glorot uniform × scale): a small residual
    branch at first, so the untrained network is close to its skip path (BasicSR's SRResNet uses 0.1).
    """
    name = f"res{index:02d}"
    y = keras.layers.Conv2D(channels, 3, padding="same", use_bias=False, name=f"{name}_conv_a")(x)
    y = _prelu(f"{name}_prelu")(y)
    init = keras.initializers.VarianceScaling(init_scale ** 2, mode="fan_avg", distribution="uniform")
    y = keras.layers.Conv2D(channels, 3, padding="same", use_bias=False, kernel_initializer=init,
                            name=f"{name}_conv_b")(y)
    return keras.layers.Add(name=f"{name}_add")([x, y])


def build_generator(spec: ModelSpec = ModelSpec(), name: str = "generator",
                    residual_init_scale: float = 1.0) -> keras.Model:
    """float32 [-1, 1] NHWC of any N, H, W → float32 [-1, 1] of N, scale·H, scale·W."""
    c = spec.channels
    lr = keras.Input(shape=(None, None, 3), name="lr")
    x = keras.layers.Conv2D(c, 9, padding="same", name="conv_in")(lr)
    x = _prelu("prelu_in")(x)
    start = x
    for i in range(spec.residual_blocks):
        x = _residual_block(x, c, i, residual_init_scale)
    x = keras.layers.Conv2D(c, 3, padding="same", name="conv_mid")(x)
    x = keras.layers.Add(name="global_skip")([x, start])
    for i in range(spec.upsample_stages):
        x = keras.layers.Conv2D(c * 4, 3, padding="same", name=f"up{i}_conv")(x)
        x = PixelShuffle(2, name=f"up{i}_shuffle")(x)
        x = _prelu(f"up{i}_prelu")(x)
    x = keras.layers.Conv2D(3, 9, padding="same", name="conv_out")(x)
    # float32 output even under a mixed-precision policy: tanh's range and the losses want full precision.
    sr = keras.layers.Activation("tanh", dtype="float32", name="sr")(x)
    return keras.Model(lr, sr, name=name)
