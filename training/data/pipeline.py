"""The tf.data pipeline: decode → (cache) → shuffle → random crop + the article's augmentations → LR by
bicubic ×scale downsampling → batch → prefetch.

HR labels and LR inputs are both rounded to the uint8 grid before being scaled to [-1, 1]: a deployed model
only ever sees uint8 images, so the training inputs should look like them.
"""

import dataclasses

import numpy as np
import tensorflow as tf

from core.contract import HALF_RANGE

AUTOTUNE = tf.data.AUTOTUNE


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    crop_size: int = 128
    scale: int = 4
    augment: bool = True
    # False: the article's plain `tf.image.resize` bicubic; True: antialiased bicubic (MATLAB's imresize, what
    # the literature's benchmarks use).
    antialias: bool = False
    # A random order of the RGB channels per crop (Yoo et al., CVPR 2020): the network cannot learn the
    # colour statistics of its training photographs, so it has to carry the input's colour through.
    channel_shuffle: bool = False
    shuffle_buffer: int = 10_000


def to_unit_range(uint8_like):
    """0–255 → [-1, 1], the article's (x − 127.5) / 127.5: core.contract.to_unit in TensorFlow ops."""
    return tf.cast(uint8_like, tf.float32) / HALF_RANGE - 1.0


def downsample(hr_255, config: PipelineConfig):
    """HR with values 0–255 (float) → LR of 1/scale the size, bicubic, clipped and rounded to 0–255."""
    size = tf.shape(hr_255)[-3:-1] // config.scale
    lr = tf.image.resize(hr_255, size, method="bicubic", antialias=config.antialias)
    return tf.round(tf.clip_by_value(lr, 0.0, 255.0))


def _augment(image01):
    """The article's augmentations (section 4.3) on a float image in [0, 1], kept in range."""
    image01 = tf.image.random_flip_left_right(image01)
    image01 = tf.image.random_saturation(image01, 0.95, 1.05)
    image01 = tf.image.random_brightness(image01, 0.05)
    image01 = tf.image.random_contrast(image01, 0.95, 1.05)
    image01 = tf.image.random_hue(image01, 0.05)
    return tf.clip_by_value(image01, 0.0, 1.0)


def _decode(path):
    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def _make_pair(config: PipelineConfig):
    def make_pair(image_u8):
        crop = tf.image.random_crop(image_u8, [config.crop_size, config.crop_size, 3])
        image01 = tf.image.convert_image_dtype(crop, tf.float32)
        if config.augment:
            image01 = _augment(image01)
        if config.channel_shuffle:
            image01 = tf.gather(image01, tf.random.shuffle(tf.range(3)), axis=-1)
        hr_255 = tf.round(image01 * 255.0)
        lr_255 = downsample(hr_255, config)
        return to_unit_range(lr_255), to_unit_range(hr_255)
    return make_pair


def training_dataset(paths, config: PipelineConfig, batch_size: int, fixed_size: int | None,
                     in_memory: bool = False) -> tf.data.Dataset:
    """An endless dataset of (LR, HR) batches in [-1, 1], reshuffled every pass over the files.

    Decoded images are kept in memory when they share one small size (crops) or when `in_memory` says that
    the whole photographs fit (a handful of them, as in the photos data set).
    """
    ds = tf.data.Dataset.from_tensor_slices(list(paths))
    ds = ds.map(_decode, num_parallel_calls=AUTOTUNE)
    # A file that PIL accepted but TensorFlow cannot decode is dropped (and logged) rather than fatal.
    ds = ds.ignore_errors(log_warning=True)
    if in_memory or (fixed_size is not None and len(paths) * fixed_size * fixed_size * 3 < 4 << 30):
        ds = ds.cache()  # decoded crops fit in memory (CelebA's 10 656 crops are 0.5 GB)
    ds = ds.shuffle(min(len(paths), config.shuffle_buffer), reshuffle_each_iteration=True).repeat()
    ds = ds.map(_make_pair(config), num_parallel_calls=AUTOTUNE)
    ds = ds.batch(batch_size, drop_remainder=True)  # static shapes: one XLA compilation
    return ds.prefetch(AUTOTUNE)


def held_out_pairs(paths, config: PipelineConfig, size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The held-out images as uint8 arrays (LR, HR): centre crop of `size` (default: the training crop), no
    augmentation, the same degradation."""
    size = size or config.crop_size
    hr, lr = [], []
    for path in paths:
        image = _decode(path)
        h, w = image.shape[:2]
        top, left = (h - size) // 2, (w - size) // 2
        crop = tf.cast(image[top:top + size, left:left + size], tf.float32)
        hr.append(crop.numpy().astype(np.uint8))
        lr.append(downsample(crop, config).numpy().astype(np.uint8))
    return np.stack(lr), np.stack(hr)
