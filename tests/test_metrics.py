import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from training.metrics import psnr_y, quality_report, rgb_to_y, ssim_y


def test_bt601_luma_range():
    assert rgb_to_y(np.array([0, 0, 0], np.uint8)) == pytest.approx(16.0)
    assert rgb_to_y(np.array([255, 255, 255], np.uint8)) == pytest.approx(235.0)
    assert rgb_to_y(np.array([255, 0, 0], np.uint8)) == pytest.approx(16 + 65.481)


def test_psnr_hand_computed():
    # Grey images one level apart: Y differs by (65.481 + 128.553 + 24.966) / 255 = 219 / 255 everywhere.
    hr = np.full((1, 20, 20, 3), 100, np.uint8)
    sr = hr + 1
    mse = (219 / 255) ** 2
    assert psnr_y(sr, hr, border=4)[0] == pytest.approx(10 * np.log10(255 ** 2 / mse), abs=1e-4)


def test_psnr_crops_the_border(rng):
    hr = rng.integers(0, 256, (1, 24, 24, 3)).astype(np.uint8)
    sr = hr.copy()
    sr[:, :4] = 255 - sr[:, :4]  # damage only the top 4 rows
    assert psnr_y(sr, hr, border=4)[0] > 100  # identical after cropping 4 pixels
    assert psnr_y(sr, hr, border=0)[0] < 30


def _noisy_pair(rng, shape=(2, 40, 48, 3)):
    hr = rng.integers(0, 256, shape).astype(np.uint8)
    sr = np.clip(hr.astype(int) + rng.integers(-25, 26, shape), 0, 255).astype(np.uint8)
    return sr, hr


def test_psnr_and_ssim_match_scikit_image(rng):
    sr, hr = _noisy_pair(rng)
    for i in range(2):
        y_sr, y_hr = rgb_to_y(sr[i])[4:-4, 4:-4], rgb_to_y(hr[i])[4:-4, 4:-4]
        assert psnr_y(sr, hr, 4)[i] == pytest.approx(peak_signal_noise_ratio(y_hr, y_sr, data_range=255),
                                                     abs=1e-4)
        expected = structural_similarity(y_sr, y_hr, gaussian_weights=True, sigma=1.5,
                                         use_sample_covariance=False, data_range=255)
        assert ssim_y(sr, hr, 4)[i] == pytest.approx(expected, abs=1e-5)


def test_quality_report_has_model_and_bicubic(rng):
    sr, hr = _noisy_pair(rng)
    report = quality_report(sr, hr, hr, scale=4)
    assert report["psnr_bicubic"] > 100 and report["ssim_bicubic"] == pytest.approx(1.0)
    assert report["psnr"] < 40 and report["ssim"] < 1.0
