"""What a person looks at: the held-out images as PNG and a sample sheet per epoch."""

from pathlib import Path

import numpy as np
import tensorflow as tf

from training.data.images import save_png


def bicubic_upscale(lr_uint8: np.ndarray, scale: int) -> np.ndarray:
    """The baseline: bicubic ×scale in the same pipeline as the training data, back to uint8."""
    h, w = lr_uint8.shape[1:3]
    up = tf.image.resize(tf.cast(lr_uint8, tf.float32), (h * scale, w * scale), method="bicubic")
    return tf.cast(tf.round(tf.clip_by_value(up, 0.0, 255.0)), tf.uint8).numpy()


def save_held_out(lr: np.ndarray, hr: np.ndarray, directory: Path) -> None:
    """The held-out LR inputs and HR targets as PNG, written at the start of a run (article section 4.4)."""
    for i, (lr_image, hr_image) in enumerate(zip(lr, hr)):
        save_png(lr_image, directory / "lr" / f"{i:02d}.png")
        save_png(hr_image, directory / "hr" / f"{i:02d}.png")


def save_sample_sheet(bicubic: np.ndarray, sr: np.ndarray, hr: np.ndarray, path: Path) -> None:
    """One row per held-out image: bicubic-upscaled LR | SR | HR, separated by white gutters."""
    gutter = 4
    rows = []
    for images in zip(bicubic, sr, hr):
        h = images[0].shape[0]
        spacer = np.full((h, gutter, 3), 255, np.uint8)
        rows.append(np.concatenate([images[0], spacer, images[1], spacer, images[2]], axis=1))
    width = rows[0].shape[1]
    sheet = [rows[0]]
    for row in rows[1:]:
        sheet += [np.full((gutter, width, 3), 255, np.uint8), row]
    save_png(np.concatenate(sheet, axis=0), path)
