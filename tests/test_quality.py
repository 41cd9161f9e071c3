"""Does training learn, does the shipped generator hold what its card says, and does the quality benchmark
write what it promises."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests.helpers import REPO, TINY_MODEL, write_image

PRETRAINED = REPO / "training" / "pretrained" / "photos"


def test_shipped_generator_reproduces_its_recorded_held_out_scores():
    from training.checkpointing import load_weights
    from training.evaluation import keras_upscaler, held_out_pairs, score
    from training.model import ModelSpec
    card = json.loads((PRETRAINED / "card.json").read_text())
    trained = load_weights(PRETRAINED)
    assert trained.spec == ModelSpec()  # the article's generator, unchanged
    assert trained.model.count_params() == 1_544_387
    pairs = held_out_pairs(4, antialias=card["config"]["antialias"])
    assert [p.name for p in pairs] == card["held_out_evaluation"]["photos"]
    measured = score({"model": keras_upscaler(trained.model)}, pairs)["model"]
    recorded = card["held_out"]["final"]["model"]
    assert measured["psnr"] == pytest.approx(recorded["psnr"], abs=0.05)
    for name, values in recorded["images"].items():
        assert measured["images"][name]["psnr"] == pytest.approx(values["psnr"], abs=0.05)
    assert recorded["psnr"] > card["held_out"]["final"]["bicubic"]["psnr"]  # what the README claims


def test_shipped_data_list_keeps_training_and_held_out_photographs_apart():
    from training.data import photos
    card = json.loads((PRETRAINED / "card.json").read_text())
    train = {p["file"] for p in card["data"] if p["role"] == "train"}
    held_out = {p["file"] for p in card["data"] if p["role"] == "held-out"}
    assert train and held_out and not train & held_out
    assert held_out == {p.file for p in photos.HELD_OUT_PHOTOS}
    assert all(p["licence"] and p["source"] for p in card["data"])


def test_pretraining_raises_held_out_psnr(tmp_path, cache_dir):
    """A few dozen steps of the photos recipe on a tiny generator: the held-out PSNR must climb."""
    from training.config import config_from_args
    from training.run import train
    out = tmp_path / "run"
    train(config_from_args(["--preset", "photos", *TINY_MODEL, "--crop-size", "32", "--batch-size", "4",
                            "--pretrain-steps", "200", "--eval-every", "100", "--eval-size", "64", "--epochs", "0",
                            "--learning-rate", "2e-3", "--no-xla", "--out-dir", str(out),
                            "--cache-dir", str(cache_dir)]))
    curve = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    curve = [r for r in curve if r["kind"] in ("pretrain-curve", "pretrain")]
    assert [r["step"] for r in curve] == [0, 100, 200]
    assert curve[-1]["psnr"] > curve[0]["psnr"] + 2.5
    losses = [r["pretrain_loss"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
              if r["kind"] == "train"]
    assert losses[-1] < losses[0]
    assert (out / "checkpoints" / "srresnet.index").exists()  # the pre-trained generator is kept


def test_quality_benchmark_writes_every_file(exported, trained_run, tmp_path, rng):
    version_dir, _ = exported
    photos = tmp_path / "photos"
    for i in range(2):  # smooth pictures with some texture, 48×64 (not square, multiples of 4)
        y, x = np.mgrid[0:48, 0:64]
        picture = 128 + 90 * np.sin(x[..., None] / (5 + i) + y[..., None] / 7 + np.arange(3))
        write_image(photos / f"p{i}.png", np.clip(picture + rng.normal(0, 8, picture.shape), 0, 255).astype(np.uint8))
    out = tmp_path / "quality"
    result = subprocess.run([sys.executable, "benchmarks/quality.py", "--model-dir", str(version_dir.parent),
                             "--images", str(photos), "--backends", "onnx,savedmodel",
                             "--metrics", str(trained_run / "metrics.jsonl"), "--out", str(out)],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads((out / "quality.json").read_text())
    assert set(data["methods"]) == {"bicubic", "lanczos", "v1 onnx", "v1 savedmodel"}
    assert set(data["methods"]["bicubic"]["images"]) == {"p0", "p1"}
    onnx, saved = data["methods"]["v1 onnx"], data["methods"]["v1 savedmodel"]
    assert onnx["psnr"] == pytest.approx(saved["psnr"], abs=0.05)  # two deployed forms, one model
    assert data["methods"]["bicubic"]["psnr"] > 20  # the baseline is computed against the right original
    assert data["learning_curve"]["final_step"] == 3
    for name in ("comparison.png", "learning_curve.png"):
        assert Image.open(out / name).size[0] > 100
    assert "| bicubic |" in (out / "quality.md").read_text()
    assert "v1 onnx" in result.stdout


def test_quality_benchmark_says_when_there_is_no_model(tmp_path):
    result = subprocess.run([sys.executable, "benchmarks/quality.py", "--model-dir", str(tmp_path / "none")],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "export one with python -m export.to_onnx" in result.stderr
    assert "Traceback" not in result.stderr
