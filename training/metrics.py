"""PSNR and SSIM as the super-resolution literature reports them.

Y channel of BT.601 (Y = 16 + 65.481 R + 128.553 G + 24.966 B with RGB in [0, 1], so Y in 16–235), a border
of `scale` pixels cropped, data range 255; SSIM with an 11×11 Gaussian window, σ = 1.5, K1 = 0.01,
K2 = 0.03 (`tf.image.ssim`'s own defaults, which match scikit-image with `gaussian_weights=True`).
"""

import numpy as np
import tensorflow as tf

from training.niqe import niqe

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
            "colour_shift_max": float(np.abs(colour_shift(sr, hr, scale)).max()),
            **{f"niqe{suffix}": mean_niqe(images, scale) for suffix, images in
               (("", sr), ("_bicubic", bicubic), ("_hr", hr))},
            "hf_ratio": float(np.mean([high_frequency_ratio(s, h, scale) for s, h in zip(sr, hr)]))}


def mean_niqe(images: np.ndarray, border: int) -> float | None:
    """The mean NIQE of the images large enough for it (`training.niqe.MIN_SIDE`), or None if none is."""
    scores = [s for s in (niqe(image, border) for image in images) if s is not None]
    return float(np.mean(scores)) if scores else None


def high_frequency_ratio(sr: np.ndarray, hr: np.ndarray, scale: int) -> float:
    """Energy of SR's Y above the LR grid's Nyquist frequency (max(|fx|, |fy|) > 1/(2·scale) cycles per pixel),
    over HR's in the same band, both Hann-windowed, `scale` pixels of border cropped: the detail that ×`scale`
    downsampling removed and a model must recreate. Bicubic gives far below 1; 1 is HR's energy (not its
    content: noise scores as well as texture, so read it beside PSNR and NIQE)."""
    def band_energy(rgb):
        y = rgb_to_y(rgb)[scale:-scale, scale:-scale]
        window = np.hanning(y.shape[0])[:, None] * np.hanning(y.shape[1])[None, :]
        spectrum = np.abs(np.fft.fft2((y - y.mean()) * window)) ** 2
        fy, fx = np.abs(np.fft.fftfreq(y.shape[0]))[:, None], np.abs(np.fft.fftfreq(y.shape[1]))[None, :]
        return float(spectrum[np.maximum(fy, fx) > 0.5 / scale].sum())
    return band_energy(sr) / max(band_energy(hr), 1e-12)
