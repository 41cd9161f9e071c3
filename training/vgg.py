"""The frozen VGG19 feature extractor behind the article's content loss, and where its weights come from."""

import os
from pathlib import Path

import keras

from core.cli import UserError

FEATURE_LAYER = "block5_conv4"
KERAS_WEIGHTS_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"


def _remedies() -> str:
    return (f"pass --vgg-weights FILE (Keras' {KERAS_WEIGHTS_FILE}), put that file in "
            f"~/.keras/models/, allow Keras to download it, or train with --content-loss mse")


def vgg_weights_on_disk() -> bool:
    """Whether Keras' cache already holds the VGG19 weights (so `weights="imagenet"` needs no download)."""
    cache = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    return (cache / "models" / KERAS_WEIGHTS_FILE).is_file()


def load_vgg_features(weights_file: Path | None = None) -> keras.Model:
    """VGG19 up to `block5_conv4`, frozen, any input size.

    Weights come from `weights_file` if given, else from `weights="imagenet"`, which reads Keras' cache
    (~/.keras/models/) and downloads only when the file is not there.
    """
    if weights_file is not None:
        weights_file = Path(weights_file)
        if not weights_file.is_file():
            raise UserError(f"VGG19 weights file {weights_file} does not exist: {_remedies()}.")
        source = str(weights_file)
    else:
        source = "imagenet"
    try:
        vgg = keras.applications.VGG19(include_top=False, weights=source, input_shape=(None, None, 3))
    except Exception as error:  # Keras raises bare Exceptions for URL failures and ValueErrors for bad files
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UserError(f"VGG19 ImageNet weights could not be loaded ({reason}): {_remedies()}.") from None
    features = keras.Model(vgg.input, vgg.get_layer(FEATURE_LAYER).output, name="vgg19_features")
    features.trainable = False
    return features
