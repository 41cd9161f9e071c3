"""NIQE, the Natural Image Quality Evaluator (Mittal, Soundararajan & Bovik, "Making a 'Completely Blind'
Image Quality Analyzer", IEEE Signal Processing Letters, 2013): how far an image's local statistics are from
those of pristine natural photographs. Lower is more natural; it needs no reference image, which is why the
perceptual SR literature (PIRM 2018, ESRGAN, Real-ESRGAN) reports it beside PSNR.

The computation follows the authors' MATLAB release as BasicSR re-implements it (`basicsr/metrics/niqe.py`):
the Y channel of BT.601 rounded to whole levels, 96×96 blocks without overlap, at full and half resolution
(MATLAB's antialiased bicubic `imresize`). The pristine model (`niqe_pris_params.npz`: the multivariate
Gaussian's mean and covariance, and the 7×7 window) is the authors' own, as BasicSR 1.4.2 ships it
(Apache-2.0); see `NIQE_PARAMS.md` beside it.
"""

import math
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy.ndimage import convolve
from scipy.special import gamma

BLOCK = 96  # the block side of the pristine model
MIN_SIDE = 2 * BLOCK  # fewer than 2×2 blocks leaves the image's covariance degenerate: no score
PARAMS_FILE = Path(__file__).with_name("niqe_pris_params.npz")
_Y_WEIGHTS = np.array([65.481, 128.553, 24.966]) / 255.0


@lru_cache(maxsize=1)
def _pristine():
    params = np.load(PARAMS_FILE)
    return params["mu_pris_param"][0], params["cov_pris_param"], params["gaussian_window"]


def _matlab_resize_weights(in_length: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """MATLAB `imresize`'s bicubic weights for one axis, antialiased when shrinking: (out, taps) weights and the
    input indices they apply to, reflected at the edges as MATLAB does."""
    out_length = math.ceil(in_length * scale)
    width = 4.0 / scale if scale < 1 else 4.0
    x = np.arange(1, out_length + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - width / 2)
    taps = math.ceil(width) + 2
    indices = left[:, None] + np.arange(taps)[None, :]
    distance = (u[:, None] - indices) * (scale if scale < 1 else 1.0)
    a = np.abs(distance)
    cubic = ((1.5 * a ** 3 - 2.5 * a ** 2 + 1) * (a <= 1)
             + (-0.5 * a ** 3 + 2.5 * a ** 2 - 4 * a + 2) * ((a > 1) & (a <= 2)))
    weights = cubic * (scale if scale < 1 else 1.0)
    weights /= weights.sum(axis=1, keepdims=True)
    index = indices.astype(np.int64) - 1  # 1-based → 0-based
    index = np.where(index < 0, -index - 1, index)  # symmetric padding, as MATLAB
    index = np.where(index >= in_length, 2 * in_length - index - 1, index)
    return weights, index


def matlab_imresize(image: np.ndarray, scale: float) -> np.ndarray:
    """A 2-D float image resized by `scale` as MATLAB's `imresize(image, scale)` (bicubic, antialiased)."""
    weights, index = _matlab_resize_weights(image.shape[0], scale)
    rows = np.einsum("ok,okw->ow", weights, image[index])
    weights, index = _matlab_resize_weights(image.shape[1], scale)
    return np.einsum("ok,hok->ho", weights, rows[:, index])


_GAM = np.arange(0.2, 10.001, 0.001)
_R_GAM = gamma(2 / _GAM) ** 2 / (gamma(1 / _GAM) * gamma(3 / _GAM))


def _aggd(values: np.ndarray) -> tuple[float, float, float]:
    """Shape and left/right scales of an asymmetric generalised Gaussian fitted by moment matching (eq. 7)."""
    values = values.ravel()
    left = np.sqrt(np.mean(values[values < 0] ** 2))
    right = np.sqrt(np.mean(values[values > 0] ** 2))
    gamma_hat = left / right
    r_hat = np.mean(np.abs(values)) ** 2 / np.mean(values ** 2)
    r_norm = r_hat * (gamma_hat ** 3 + 1) * (gamma_hat + 1) / (gamma_hat ** 2 + 1) ** 2
    alpha = _GAM[np.argmin((_R_GAM - r_norm) ** 2)]
    spread = np.sqrt(gamma(1 / alpha) / gamma(3 / alpha))
    return alpha, left * spread, right * spread


def _block_features(block: np.ndarray) -> list[float]:
    """The 18 features of one block of normalised coefficients: their AGGD, and that of the products of
    neighbours in four orientations (eq. 8)."""
    alpha, left, right = _aggd(block)
    features = [alpha, (left + right) / 2]
    for shift in ((0, 1), (1, 0), (1, 1), (1, -1)):
        alpha, left, right = _aggd(block * np.roll(block, shift, axis=(0, 1)))
        features += [alpha, (right - left) * gamma(2 / alpha) / gamma(1 / alpha), left, right]
    return features


def niqe_y(y: np.ndarray) -> float:
    """NIQE of a 2-D luma image in 0–255 (whole levels); at least `MIN_SIDE` pixels each side."""
    mu_pristine, cov_pristine, window = _pristine()
    rows, cols = y.shape[0] // BLOCK, y.shape[1] // BLOCK
    if min(rows, cols) < MIN_SIDE // BLOCK:
        raise ValueError(f"NIQE needs at least {MIN_SIDE}×{MIN_SIDE} pixels, got {y.shape[1]}×{y.shape[0]}")
    # float32 throughout, as BasicSR: the local deviation of a few blocks is sensitive to it, and matching the
    # reference implementation beats matching MATLAB's doubles that nobody else reproduces.
    image = np.asarray(y, np.float32)[:rows * BLOCK, :cols * BLOCK]
    with warnings.catch_warnings():  # a flat block's statistics are NaN (numpy warns); such blocks are left out
        warnings.simplefilter("ignore", RuntimeWarning)
        return _distance(image, rows, cols, mu_pristine, cov_pristine, window)


def _distance(image, rows: int, cols: int, mu_pristine, cov_pristine, window) -> float:
    per_scale = []
    for scale in (1, 2):
        mu = convolve(image, window, mode="nearest")
        sigma = np.sqrt(np.abs(convolve(image ** 2, window, mode="nearest") - mu ** 2))
        normalised = (image - mu) / (sigma + 1)
        side = BLOCK // scale
        per_scale.append(np.array([_block_features(normalised[r * side:(r + 1) * side, c * side:(c + 1) * side])
                                   for c in range(cols) for r in range(rows)]))
        if scale == 1:
            image = (matlab_imresize(image / np.float32(255), 0.5).astype(np.float32) * np.float32(255))
    features = np.concatenate(per_scale, axis=1)
    finite = features[~np.isnan(features).any(axis=1)]
    if len(finite) < 2:  # flat blocks (no variation at all) have no statistics: nothing to compare
        raise ValueError(f"NIQE needs at least 2 blocks with texture, got {len(finite)} of {len(features)}")
    mu = np.nanmean(features, axis=0)
    cov = np.cov(finite, rowvar=False)
    difference = mu_pristine - mu
    return float(np.sqrt(difference @ np.linalg.pinv((cov_pristine + cov) / 2) @ difference))


def niqe(rgb_uint8: np.ndarray, border: int = 0) -> float | None:
    """NIQE of one uint8 RGB image (H×W×3) on its BT.601 Y channel, `border` pixels cropped from each side,
    as BasicSR's `calculate_niqe`; None where fewer than `MIN_SIDE` pixels are left on a side, or fewer than two
    blocks have any texture (a flat picture)."""
    y = (16.0 + np.asarray(rgb_uint8, np.float32) / np.float32(255) @ (_Y_WEIGHTS * 255)).astype(np.float32)
    if border:
        y = y[border:-border, border:-border]
    if min(y.shape) < MIN_SIDE:
        return None
    try:
        return niqe_y(np.round(y))
    except ValueError:  # flat: no statistics to compare
        return None
