"""Layers the SRGAN networks need beyond Keras' own, each serialisable (no `Lambda`)."""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="srgan")
class PixelShuffle(keras.layers.Layer):
    """Sub-pixel upsampling: (N, H, W, C·r²) → (N, rH, rW, C).

    `tf.nn.depth_to_space` is the article's `pixelShuffler` in one op, and tf2onnx maps it to ONNX
    DepthToSpace (DCR mode), so the exported graph keeps a single node per upsampling stage.
    """

    def __init__(self, scale: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.scale = scale

    def call(self, inputs):
        return tf.nn.depth_to_space(inputs, self.scale)

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        r = self.scale
        return (n, None if h is None else h * r, None if w is None else w * r, c // (r * r))

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}
