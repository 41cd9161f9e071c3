"""The exported entry points, one contract for every backend.

- uint8 (`serving_default`, model.onnx): RGB NHWC uint8 of any N, H, W → uint8 of N, scale·H, scale·W; the
  scaling to [-1, 1] and back (round half to even, clip) happens inside the graph.
- float (`predict_float`, model_float.onnx): float32 [-1, 1] → float32 [-1, 1], the training model's own
  interface, kept for parity checks.
- encoded (`predict_encoded`, SavedModel only): PNG/JPEG/BMP/GIF bytes, one image per element → PNG bytes
  (`sr_png_bytes`: TF Serving's REST API base64-encodes outputs whose name ends in `_bytes`).
"""

import keras
import tensorflow as tf

from core.contract import (ENCODED_INPUT, ENCODED_OUTPUT, FLOAT_INPUT, FLOAT_OUTPUT, HALF_RANGE,
                              PREDICT_ENCODED, PREDICT_FLOAT, SERVING_DEFAULT, UINT8_INPUT, UINT8_OUTPUT)
from export.head import folded_head
from export.tiles import Tiling, bounded
from training.data.pipeline import to_unit_range

UINT8_SPEC = tf.TensorSpec([None, None, None, 3], tf.uint8, name=UINT8_INPUT)
FLOAT_SPEC = tf.TensorSpec([None, None, None, 3], tf.float32, name=FLOAT_INPUT)
ENCODED_SPEC = tf.TensorSpec([None], tf.string, name=ENCODED_INPUT)


def plain(generator: keras.Model):
    """The generator as one call on the whole input: what the ONNX files hold (ONNX Runtime's backend tiles
    large inputs itself). Its last convolution runs before the last pixel shuffle (`export.head`): the same
    function, a third less time on ONNX Runtime's CPU provider."""
    return folded_head(generator)


def upscale_uint8(generate, images):
    y = generate(to_unit_range(images))
    return tf.cast(tf.clip_by_value(tf.round((y + 1.0) * HALF_RANGE), 0.0, 255.0), tf.uint8)


def uint8_function(generate) -> tf.types.experimental.GenericFunction:
    def serve(images):
        return {UINT8_OUTPUT: upscale_uint8(generate, images)}
    return tf.function(serve, input_signature=[UINT8_SPEC])


def float_function(generate) -> tf.types.experimental.GenericFunction:
    def predict_float(lr):
        return {FLOAT_OUTPUT: generate(lr)}
    return tf.function(predict_float, input_signature=[FLOAT_SPEC])


def encoded_function(generate) -> tf.types.experimental.GenericFunction:
    def upscale_one(image_bytes):
        image = tf.io.decode_image(image_bytes, channels=3, expand_animations=False)
        return tf.io.encode_png(upscale_uint8(generate, image[None])[0])

    def predict_encoded(image_bytes):
        # Images in one request may differ in size, so each goes through the generator on its own.
        return {ENCODED_OUTPUT: tf.map_fn(upscale_one, image_bytes, fn_output_signature=tf.string)}
    return tf.function(predict_encoded, input_signature=[ENCODED_SPEC])


class ServingModule(tf.Module):
    """What the SavedModel holds: the generator's variables and the three signatures, each running the
    generator on at most one window of pixels at a time (`export.tiles`; `tiling=None`: on the whole input)."""

    def __init__(self, generator: keras.Model, tiling: Tiling | None):
        super().__init__(name="srgan")
        self.generator = generator
        # The tf.Variables behind Keras 3's variables, tracked here so that the SavedModel's restore op fills
        # the very handles the signatures read. Without this, graph-mode loaders (tensorflow_model_server,
        # saved_model_cli) restore one copy and run on another, uninitialised one (keras-team/keras#20095).
        self.backing_variables = [v.value for v in generator.variables]
        generate = plain(generator) if tiling is None else bounded(plain(generator), tiling)
        self.serve_uint8 = uint8_function(generate)
        self.serve_float = float_function(generate)
        self.serve_encoded = encoded_function(generate)

    def signatures(self) -> dict:
        return {SERVING_DEFAULT: self.serve_uint8, PREDICT_FLOAT: self.serve_float,
                PREDICT_ENCODED: self.serve_encoded}
