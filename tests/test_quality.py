"""Does training learn, does the shipped generator hold what its card says, and does the quality benchmark
write what it promises."""

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests.helpers import REPO, TINY_MODEL, write_image

PRETRAINED = REPO / "training" / "pretrained" / "photos"


@pytest.mark.slow
def test_shipped_generator_reproduces_its_recorded_held_out_scores():
    from training.checkpointing import load_weights
    from training.evaluation import keras_upscaler, held_out_pairs, score
    from training.model import ModelSpec
    card = json.loads((PRETRAINED / "card.json").read_text())
    trained = load_weights(PRETRAINED)
    assert trained.spec == ModelSpec()  # the article's generator, unchanged
    assert trained.model.count_params() == 1_544_387
    pairs = held_out_pairs(4, antialias=card["config"]["antialias"])
    recorded_names = card["held_out_evaluation"]["photos"]
    # Without the Debian wallpaper packages only the pip packages' photographs are there: each is compared.
    assert [p.name for p in pairs] == [n for n in recorded_names if n in {p.name for p in pairs}]
    assert len(pairs) >= 3
    measured = score({"model": keras_upscaler(trained.model)}, pairs)["model"]
    recorded = card["held_out"]["final"]["model"]
    for pair in pairs:
        values = recorded["images"][pair.name]
        assert measured["images"][pair.name]["psnr"] == pytest.approx(values["psnr"], abs=0.05)
        assert measured["images"][pair.name]["colour_shift"] == pytest.approx(values["colour_shift"], abs=0.05)
    if len(pairs) == len(recorded_names):
        assert measured["psnr"] == pytest.approx(recorded["psnr"], abs=0.05)
    assert recorded["psnr"] > card["held_out"]["final"]["bicubic"]["psnr"]  # what the README claims


def test_shipped_data_list_keeps_training_and_held_out_photographs_apart():
    from training.data import photos
    card = json.loads((PRETRAINED / "card.json").read_text())
    key = lambda p: (p["package"], p["folder"], p["file"])  # noqa: E731  (Plasma's files share names)
    train = {key(p) for p in card["data"] if p["role"] == "train"}
    held_out = {key(p) for p in card["data"] if p["role"] == "held-out"}
    assert train and held_out and not train & held_out
    assert held_out == {key(dataclasses.asdict(p)) for p in photos.HELD_OUT_PHOTOS}
    assert len(held_out) >= 12
    assert all(p["licence"] and p["source"] and p["package"] for p in card["data"])


def test_data_catalogue_names_every_source_and_never_the_reserved_evaluation_set():
    from training.data import photos
    entries = photos.TRAINING_PHOTOS + photos.HELD_OUT_PHOTOS
    assert len({(p.folder, p.file) for p in entries}) == len(entries)  # no photograph twice
    assert len({p.name for p in entries}) == len(entries)  # names are unique (the cache and tables use them)
    for photo in entries:
        assert photo.source.strip() and photo.licence.strip(), photo
        assert photos.RESERVED_PACKAGE not in photo.package and "/mate" not in photo.folder, photo
    assert photos.RESERVED_PACKAGE not in photos.INSTALL_COMMAND
    # every Debian package named is one the install command installs
    assert {p.package for p in entries if p.debian} == set(photos.INSTALL_COMMAND.split()[3:])


def test_colour_shift_is_the_mean_difference_per_channel():
    """A generator whose output is biased by a few levels is reported with that bias, as a hand computation
    gives it; PSNR on Y alone would call a pure blue cast a small loss."""
    from training import metrics
    from training.evaluation import score_image
    rng = np.random.default_rng(3)
    hr = rng.integers(20, 200, (1, 40, 48, 3)).astype(np.uint8)
    sr = hr.astype(np.int16) + np.array([0, -2, 7])  # green −2, blue +7 levels
    sr[0, 10, 10, 0] += 40  # one pixel inside the scored area, red +40
    sr[0, 0, 0, 0] += 40  # one pixel in the cropped border: not counted
    sr = np.clip(sr, 0, 255).astype(np.uint8)
    shift = metrics.colour_shift(sr, hr, border=4)[0]
    inner = (sr[0, 4:-4, 4:-4].astype(np.float64) - hr[0, 4:-4, 4:-4]).mean(axis=(0, 1))
    np.testing.assert_allclose(shift, inner)
    assert shift[0] == pytest.approx(40 / (32 * 40))
    assert shift[1] == pytest.approx(-2) and shift[2] == pytest.approx(7)
    assert score_image(sr[0], hr[0], 4)["colour_shift"] == pytest.approx(list(shift), abs=1e-3)
    report = metrics.quality_report(sr, hr, hr, 4)
    assert report["colour_shift_max"] == pytest.approx(7) and report["below_bicubic"] == 1


@pytest.mark.slow
def test_pretraining_raises_held_out_psnr(tmp_path, cache_dir):
    """A few dozen steps of the photos recipe on a tiny generator: the held-out PSNR must climb."""
    from training.config import config_from_args
    from training.run import train
    out = tmp_path / "run"
    train(config_from_args(["--preset", "photos", *TINY_MODEL, "--crop-size", "32", "--batch-size", "4",
                            "--pretrain-steps", "200", "--eval-every", "100", "--eval-size", "64", "--epochs", "0",
                            "--learning-rate", "2e-3", "--no-xla", "--precision", "float32", "--run-dir", str(out),
                            "--cache-dir", str(cache_dir)]))
    curve = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    curve = [r for r in curve if r["kind"] in ("pretrain-curve", "pretrain")]
    assert [r["step"] for r in curve] == [0, 100, 200]
    assert curve[-1]["psnr"] > curve[0]["psnr"] + 1.5  # +2.2 dB with only the pip photographs, +2.5 with all
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


@pytest.mark.parametrize("shipped", ["photos", "photos-gan"])
def test_the_card_command_gives_the_recorded_configuration(monkeypatch, shipped):
    """The command on each shipped card, run again, would train with exactly the configuration the card records
    (in its own run folder), and the card says what the model is for."""
    import shlex

    from training.config import config_from_args
    card = json.loads((PRETRAINED.parent / shipped / "card.json").read_text())
    assert card["objective"] == ("perception" if shipped == "photos-gan" else "distortion")
    monkeypatch.chdir(REPO)  # the paths in the command are the repository's
    argv = shlex.split(card["command"])
    assert argv[:3] == ["python", "-m", "training.run"]
    again = json.loads(json.dumps(dataclasses.asdict(config_from_args(argv[3:])), default=str))
    assert "out_dir" not in card["config"]  # where it was trained is not part of the recipe
    # A field added after the card was made is absent from it: its default must keep the recorded behaviour.
    defaults = json.loads(json.dumps(dataclasses.asdict(type(config_from_args([]))()), default=str))
    added = again.keys() - card["config"].keys() - {"out_dir"}
    recorded = {**{k: defaults[k] for k in added}, **card["config"]}
    assert {k: v for k, v in again.items() if k != "out_dir"} == recorded


def test_quality_benchmark_scores_a_training_run_as_typed(trained_run, tmp_path):
    photos = tmp_path / "photos"
    y, x = np.mgrid[0:48, 0:64]
    write_image(photos / "p.png", np.clip(128 + 90 * np.sin(x[..., None] / 5 + y[..., None] / 7 + np.arange(3)),
                                          0, 255).astype(np.uint8))
    result = subprocess.run([sys.executable, "benchmarks/quality.py", "--checkpoint", str(trained_run), "--images",
                             str(photos), "--out", str(tmp_path / "q")], cwd=REPO, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    methods = json.loads((tmp_path / "q" / "quality.json").read_text())["methods"]
    assert set(methods) == {"bicubic", "lanczos", "run step 3"}
    assert methods["run step 3"]["niqe"] is None and methods["run step 3"]["niqe_skipped"] == 1  # 48×64: too small
