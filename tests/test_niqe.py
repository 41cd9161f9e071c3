"""NIQE (training.niqe) against BasicSR's implementation, and as a measure: blur must score worse."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import gaussian_filter

from training import niqe

REFERENCE = json.loads((Path(__file__).parent / "data" / "niqe_reference.json").read_text())
SKIMAGE_DATA = Path(pytest.importorskip("skimage").__file__).parent / "data"


def _rgb(name: str) -> np.ndarray:
    return np.asarray(Image.open(SKIMAGE_DATA / name).convert("RGB"))


@pytest.mark.parametrize("name", sorted(REFERENCE["niqe"]))
def test_niqe_equals_basicsr(name):
    # The reference values were computed by BasicSR 1.4.2's own calculate_niqe (benchmarks/niqe_reference.py).
    assert niqe.niqe(_rgb(name)) == pytest.approx(REFERENCE["niqe"][name], abs=0.05)


def test_blur_scores_worse_than_the_original():
    sharp = _rgb("chelsea.png")
    blurred = np.stack([gaussian_filter(sharp[..., c].astype(float), 1.5) for c in range(3)], axis=-1)
    assert niqe.niqe(np.round(blurred).astype(np.uint8)) > niqe.niqe(sharp) + 1.0


def test_images_too_small_get_no_score_and_the_border_counts():
    rgb = _rgb("astronaut.png")
    assert niqe.niqe(rgb[:niqe.MIN_SIDE, :niqe.MIN_SIDE]) is not None
    assert niqe.niqe(rgb[:niqe.MIN_SIDE - 1]) is None
    assert niqe.niqe(rgb[:niqe.MIN_SIDE, :niqe.MIN_SIDE], border=1) is None
    with pytest.raises(ValueError, match="at least 192"):
        niqe.niqe_y(np.zeros((100, 300)))


def test_matlab_imresize_halves_as_matlab_does():
    # A linear ramp stays a ramp away from the edges; a constant stays constant; sizes round up (MATLAB's ceil).
    ramp = np.tile(np.arange(16, dtype=float), (16, 1))
    half = niqe.matlab_imresize(ramp, 0.5)
    assert half.shape == (8, 8)
    assert half[4, 2:6] == pytest.approx([4.5, 6.5, 8.5, 10.5], abs=1e-9)
    assert niqe.matlab_imresize(np.full((9, 7), 3.0), 0.5) == pytest.approx(np.full((5, 4), 3.0))


def test_a_flat_picture_has_no_niqe_and_no_warning(recwarn):
    flat = np.full((256, 256, 3), 128, np.uint8)
    assert niqe.niqe(flat) is None  # every block's statistics are undefined: nothing to compare
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]
