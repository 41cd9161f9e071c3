"""PSNR and SSIM as the super-resolution literature reports them.

Y channel of BT.601 (Y = 16 + 65.481 R + 128.553 G + 24.966 B with RGB in [0, 1], so Y in 16–235), a border
of `scale` pixels cropped, data range 255; SSIM with an 11×11 Gaussian window, σ = 1.5, K1 = 0.01,
K2 = 0.03 (`tf.image.ssim`'s own defaults, which match scikit-image with `gaussian_weights=True`).
"""

import numpy as np
import tensorflow as tf

_Y_WEIGHTS = np.array([65.481, 128.553, 24.966], dtype=np.float64) / 255.0


def rgb_to_y(rgb_uint8: np.ndarray) -> np.ndarray:
    """uint8 RGB (…, H, W, 3) → float64 BT.601 luma in 16–235, (…, H, W)."""
    return 16.0 + np.asarray(rgb_uint8, dtype=np.float64) @ _Y_WEIGHTS


def _y_cropped(images: np.ndarray, border: int) -> tf.Tensor:
    y = rgb_to_y(images)
    if border:
        y = y[..., border:-border, border:-border]
    return tf.constant(y[..., None], dtype=tf.float64)


def psnr_y(sr: np.ndarray, hr: np.ndarray, border: int) -> np.ndarray:
    """Per-image PSNR (dB) on Y with `border` pixels cropped; uint8 RGB (N, H, W, 3) in."""
    return tf.image.psnr(_y_cropped(sr, border), _y_cropped(hr, border), max_val=255.0).numpy()


def ssim_y(sr: np.ndarray, hr: np.ndarray, border: int) -> np.ndarray:
    """Per-image SSIM on Y with `border` pixels cropped; uint8 RGB (N, H, W, 3) in."""
    return tf.image.ssim(_y_cropped(sr, border), _y_cropped(hr, border), max_val=255.0,
                         filter_size=11, filter_sigma=1.5, k1=0.01, k2=0.03).numpy()


def colour_shift(sr: np.ndarray, hr: np.ndarray, border: int) -> np.ndarray:
    """Per image, the mean SR − HR of each RGB channel in uint8 levels, (N, 3), with `border` pixels cropped:
    a colour cast shows as a value away from 0, which PSNR on Y barely sees."""
    diff = np.asarray(sr, np.float64) - np.asarray(hr, np.float64)
    if border:
        diff = diff[:, border:-border, border:-border]
    return diff.mean(axis=(1, 2))


def quality_report(sr: np.ndarray, bicubic: np.ndarray, hr: np.ndarray, scale: int) -> dict:
    """Mean PSNR/SSIM of the model's output and of the bicubic baseline against HR, the worst image's PSNR
    gain over bicubic, how many images are below bicubic, and the largest colour shift of any channel."""
    psnr, psnr_bicubic = psnr_y(sr, hr, scale), psnr_y(bicubic, hr, scale)
    gains = psnr - psnr_bicubic
    return {"psnr": float(psnr.mean()), "ssim": float(ssim_y(sr, hr, scale).mean()),
            "psnr_bicubic": float(psnr_bicubic.mean()),
            "ssim_bicubic": float(ssim_y(bicubic, hr, scale).mean()),
            "worst_gain": float(gains.min()), "below_bicubic": int((gains < 0).sum()),
            "colour_shift_max": float(np.abs(colour_shift(sr, hr, scale)).max())}
