"""The standard benchmark sets as the papers read them (training.benchmark_sets), on tiny generated sets in each
layout, and `benchmarks/quality.py --dataset` on one."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from core.cli import UserError
from tests.helpers import REPO, write_image
from training.benchmark_sets import read_set


def _hr(seed: int, size=(52, 40)) -> np.ndarray:  # 52×40: not a multiple of 4 in height, cropped to 52 → 52, 40
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (*size, 3), dtype=np.uint8)


def _lr_of(hr: np.ndarray) -> np.ndarray:
    h, w = hr.shape[0] // 4, hr.shape[1] // 4
    return np.asarray(Image.fromarray(hr[:4 * h, :4 * w]).resize((w, h), Image.BICUBIC))


def test_selfexsr_pairs_are_read_with_their_own_lr(tmp_path):
    for i in (1, 2):
        hr = _hr(i, (50, 43))
        write_image(tmp_path / f"img_00{i}_SRF_4_HR.png", hr)
        write_image(tmp_path / f"img_00{i}_SRF_4_LR.png", _lr_of(hr))
    benchmark = read_set("Set5", tmp_path)
    assert benchmark.layout == "pairs" and not benchmark.lr_made
    assert [p.name for p in benchmark.pairs] == ["img_001", "img_002"]
    assert benchmark.pairs[0].hr.shape == (48, 40, 3) and benchmark.pairs[0].lr.shape == (12, 10, 3)  # modcrop
    assert benchmark.paper_figures["SRGAN"][0] == 29.40


def test_basicsr_folders_are_read_by_name_and_div2k_suffixes(tmp_path):
    for name in ("baby", "bird"):
        hr = _hr(len(name), (48, 64))
        write_image(tmp_path / "GTmod12" / f"{name}.png", hr)
        write_image(tmp_path / "LRbicx4" / f"{name}.png", _lr_of(hr))
    benchmark = read_set("mine", tmp_path)
    assert benchmark.layout == "folders" and [p.name for p in benchmark.pairs] == ["baby", "bird"]
    assert benchmark.paper_figures is None
    div2k = tmp_path / "div2k"
    hr = _hr(7, (32, 32))
    write_image(div2k / "HR" / "0801.png", hr)
    write_image(div2k / "LR_bicubic" / "X4" / "0801x4.png", _lr_of(hr))
    assert read_set("DIV2K", div2k).pairs[0].lr.shape == (8, 8, 3)


def test_hr_alone_gets_the_toolkits_degradation_and_says_so(tmp_path):
    write_image(tmp_path / "a.png", _hr(3, (40, 40)))
    benchmark = read_set("Urban", tmp_path)
    assert benchmark.lr_made and benchmark.layout == "hr only"
    assert "made here" in benchmark.describe()
    assert benchmark.pairs[0].lr.shape == (10, 10, 3)


def test_mismatched_sizes_and_missing_partners_are_refused_in_one_sentence(tmp_path):
    hr = _hr(1, (48, 48))
    write_image(tmp_path / "x_HR.png", hr)
    write_image(tmp_path / "x_LR.png", _lr_of(hr)[:, :11])  # 12×11 instead of 12×12
    with pytest.raises(UserError, match=r"x_HR.png is 48×48 but its LR x_LR.png is 11×12, not 1/4 of it"):
        read_set("bad", tmp_path)
    (tmp_path / "x_LR.png").unlink()
    with pytest.raises(UserError, match="has no x_LR image"):
        read_set("bad", tmp_path)
    with pytest.raises(UserError, match="no such folder"):
        read_set("none", tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="no images"):
        read_set("empty", empty)


def _shipped_generator(folder, seed):
    """A tiny generator saved as training.publish ships one (weights + model.json + a card with its objective)."""
    import keras
    from training.model import ModelSpec, build_generator
    keras.utils.set_random_seed(seed)
    spec = ModelSpec(channels=4, residual_blocks=1)
    folder.mkdir(parents=True)
    build_generator(spec).save_weights(str(folder / "generator.weights.h5"))
    spec.save(folder)
    return folder


@pytest.mark.slow
def test_quality_benchmark_scores_a_set_beside_the_paper_and_sweeps_alpha(tmp_path):
    sets = tmp_path / "Set5"
    for i in (1, 2):
        y, x = np.mgrid[0:200, 0:200]  # 200² so that NIQE (192² at least after the border) scores the HR
        hr = np.clip(128 + 90 * np.sin(x[..., None] / (4 + i) + y[..., None] / 6 + np.arange(3)), 0, 255)
        hr = hr.astype(np.uint8)
        write_image(sets / f"img_00{i}_SRF_4_HR.png", hr)
        write_image(sets / f"img_00{i}_SRF_4_LR.png", _lr_of(hr))
    a, b = _shipped_generator(tmp_path / "psnr", 1), _shipped_generator(tmp_path / "gan", 2)
    out = tmp_path / "quality"
    result = subprocess.run([sys.executable, "benchmarks/quality.py", "--weights", str(a), "--no-held-out",
                             "--dataset", f"Set5={sets}", "--sweep", str(a), str(b), "--alphas", "0,0.5,1",
                             "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads((out / "quality.json").read_text())
    set5 = data["sets"]["Set5"]
    assert set(set5["methods"]) == {"bicubic", "lanczos", "psnr"} and set5["paper"]["SRGAN"] == [29.40, 0.8472]
    assert set5["hr"]["niqe"] is not None and set5["hr"]["niqe_skipped"] == 0
    assert "SRGAN paper (Ledig et al., CVPR 2017, Table 4)" in result.stdout
    points = data["sweep"]["sets"]["Set5"]
    assert [p["alpha"] for p in points] == [0.0, 0.5, 1.0]
    assert points[0]["psnr"] == pytest.approx(set5["methods"]["psnr"]["psnr"], abs=1e-6)  # α = 0 is the first model
    for name in ("perception_distortion.png", "textures.png", "comparison.png"):
        assert Image.open(out / name).size[0] > 100


def test_quality_benchmark_refuses_a_bad_dataset_flag(tmp_path):
    result = subprocess.run([sys.executable, "benchmarks/quality.py", "--dataset", "Set5", "--no-held-out"],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "expected NAME=DIR" in result.stderr and "Traceback" not in result.stderr
    result = subprocess.run([sys.executable, "benchmarks/quality.py", "--dataset", f"Set5={tmp_path / 'no'}",
                             "--no-held-out"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "no such folder" in result.stderr and "Traceback" not in result.stderr
