"""The generator's last convolution computed below the last pixel shuffle: the same function, a faster graph.

The article's head is pixel shuffle ×2 → PReLU → 9×9 convolution to 3 channels at full resolution. Three
output channels are the worst shape for a CPU convolution: ONNX Runtime's kernels work on blocks of 8 or 16
output channels, so this one layer, 11 % of the arithmetic, took a third of a float32 run at 32×32 and over half
of an INT8 one (profile in docs/export.md). Pixel shuffle only moves values, and a PReLU with one slope per channel
commutes with it when the slopes are repeated per sub-pixel. So the convolution can run on the shuffle's input
(r² times the channels, 1/r² of the pixels) with a kernel that reads each output sub-pixel's 9×9 window out of
⌈9/r⌉+1 low-resolution taps, writing r²·3 channels that a final shuffle puts in place. Exactly the same sums
(each weight appears once, zeros elsewhere), in float up to summation order; the export's parity check
measures it like any other backend.
"""

import keras
import numpy as np
import tensorflow as tf


def _layer_names(generator: keras.Model) -> tuple[str, str, str, str]:
    stages = sorted(layer.name for layer in generator.layers if layer.name.endswith("_shuffle"))
    last = stages[-1].removesuffix("_shuffle")
    return f"{last}_conv", f"{last}_shuffle", f"{last}_prelu", "conv_out"


def fold_kernel(kernel: np.ndarray, bias: np.ndarray, r: int) -> tuple[np.ndarray, np.ndarray, list]:
    """A k×k HWIO `kernel` (C → O) applied after depth_to_space(·, r), as a kernel applied before it:
    (T×T, r²·C → r²·O) plus its bias and the explicit [[top, bottom], [left, right]] padding. Channel order
    is depth_to_space's (DCR): channel (a·r + b)·C + c is sub-pixel row a, column b, channel c."""
    k, _, c, o = kernel.shape
    pad = (k - 1) // 2  # "same" for an odd kernel
    low, high = -((pad + r - 1) // r), (r - 1 + k - 1 - pad) // r  # floor(-pad / r), floor((r-1+k-1-pad) / r)
    taps = high - low + 1
    folded = np.zeros((taps, taps, r * r * c, r * r * o), kernel.dtype)
    for p in range(r):
        for dy in range(k):
            ty, a = divmod(p + dy - pad, r)
            for q in range(r):
                for dx in range(k):
                    tx, b = divmod(q + dx - pad, r)
                    inputs = slice((a * r + b) * c, (a * r + b + 1) * c)
                    outputs = slice((p * r + q) * o, (p * r + q + 1) * o)
                    folded[ty - low, tx - low, inputs, outputs] += kernel[dy, dx]
    return folded, np.tile(bias, r * r), [[-low, high], [-low, high]]


def folded_head(generator: keras.Model):
    """x → generator(x) with the last shuffle moved after the last convolution (module docstring). Falls back
    to the plain generator where the model is not shaped as the article's (no pixel shuffle before conv_out)."""
    names = {layer.name for layer in generator.layers}
    up_conv, shuffle, prelu, conv_out = _layer_names(generator) if any(
        n.endswith("_shuffle") for n in names) else (None,) * 4
    if not {up_conv, shuffle, prelu, conv_out} <= names:
        return lambda x: generator(x, training=False)
    r = generator.get_layer(shuffle).scale
    body = keras.Model(generator.input, generator.get_layer(up_conv).output)
    output = generator.get_layer(conv_out)
    kernel, bias, padding = fold_kernel(np.asarray(output.kernel), np.asarray(output.bias), r)
    slopes = np.tile(np.asarray(generator.get_layer(prelu).alpha), r * r)
    pads = [[0, 0], *padding, [0, 0]]

    def generate(x):
        # Constants made inside the traced function: graph constants, not captured inputs (tf2onnx).
        z = body(x, training=False)
        z = tf.nn.relu(z) + tf.constant(-slopes) * tf.nn.relu(-z)  # Keras' PReLU, slopes repeated per sub-pixel
        y = tf.nn.bias_add(tf.nn.conv2d(z, tf.constant(kernel), 1, pads), tf.constant(bias))
        return tf.tanh(tf.nn.depth_to_space(y, r))
    return generate
