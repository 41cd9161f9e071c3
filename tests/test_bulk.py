"""Bulk upscaling on Apache Beam (serving.bulk), on Beam's in-process runner (FnApiRunner: no Prism download):
the same outputs as serving.upscale, failures in the dead-letter output, a manifest, re-runs that skip."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from serving.bulk import BulkConfig, run
from serving.upscale import UpscaleConfig
from serving.upscale import run as upscale_run
from tests.helpers import png_claiming


@pytest.fixture
def photos(tmp_path, rng):
    """Mixed sizes (smaller and larger than a window), grey, RGBA, 16-bit grey; a corrupt file and a bomb."""
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(rng.integers(0, 256, (20, 16, 3), dtype=np.uint8)).save(folder / "small.png")
    Image.fromarray(rng.integers(0, 256, (150, 290, 3), dtype=np.uint8)).save(folder / "large.jpg", quality=95)
    Image.fromarray(rng.integers(0, 256, (40, 50), dtype=np.uint8)).save(folder / "grey.png")
    Image.fromarray(rng.integers(0, 256, (30, 36, 4), dtype=np.uint8), "RGBA").save(folder / "alpha.png")
    Image.fromarray((np.arange(24 * 30, dtype=np.uint16).reshape(24, 30) * 90).astype(np.uint16)).save(
        folder / "deep.png")  # I;16
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    (folder / "bomb.png").write_bytes(png_claiming(100_000, 100_000))
    return folder


GOOD = ["alpha", "deep", "grey", "large", "small"]


def _bulk(exported, photos, out, **flags):
    return run(BulkConfig((str(photos / "*"),), str(out), exported[0], tile=64, max_batch=4, **flags))


def test_bulk_outputs_equal_serving_upscale_and_failures_go_to_the_dead_letter(exported, photos, tmp_path):
    result = _bulk(exported, photos, tmp_path / "bulk")
    records = {r["input"].rsplit("/", 1)[1]: r for r in result["records"]}
    assert len(result["records"]) == len(records) == 7  # every input once
    assert result["counts"] == {"ok": 5, "skipped": 0, "failed": 2}
    assert "too large" in records["bomb.png"]["reason"] and "unreadable" in records["corrupt.png"]["reason"]
    dead = [json.loads(line) for line in (tmp_path / "bulk" / "dead_letter.jsonl").read_text().splitlines()]
    assert sorted(r["input"].rsplit("/", 1)[1] for r in dead) == ["bomb.png", "corrupt.png"]
    assert records["large.jpg"]["windows"] > 1 and records["small.png"]["windows"] == 1
    reference = tmp_path / "upscale"
    upscale_run(UpscaleConfig(tuple(photos / f for f in records if f.split(".")[0] in GOOD), reference,
                              model_dir=exported[0], tile=64))
    for name in GOOD:
        ours, theirs = Image.open(tmp_path / "bulk" / f"{name}_x4.png"), Image.open(reference / f"{name}_x4.png")
        assert ours.mode == theirs.mode and ours.size == theirs.size, name  # grey stays grey, alpha is kept
        # The same windows; batched four at a time here, one by one there: ONNX Runtime's sums may round
        # differently across batch sizes, so the export's parity tolerance applies (≤ 1 level, ≥ 99.9 % equal).
        difference = np.abs(np.asarray(ours).astype(int) - np.asarray(theirs))
        assert difference.max() <= 1 and (difference == 0).mean() >= 0.999, name
    assert Image.open(tmp_path / "bulk" / "alpha_x4.png").mode == "RGBA"
    assert Image.open(tmp_path / "bulk" / "deep_x4.png").mode == "L"
    assert not list((tmp_path / "bulk").glob(".*partial"))  # written under a temporary name, then renamed


def test_the_stitched_windows_equal_whole_image_inference(exported, photos, tmp_path):
    from serving.onnx_runtime import create_session
    _bulk(exported, photos, tmp_path / "bulk")
    lr = np.asarray(Image.open(photos / "large.jpg").convert("RGB"))
    whole = create_session(exported[0] / "model.onnx").run(None, {"images": lr[None]})[0][0]
    ours = np.asarray(Image.open(tmp_path / "bulk" / "large_x4.png"))
    assert np.abs(ours.astype(int) - whole).max() <= 1


def test_a_rerun_skips_written_outputs_and_overwrite_redoes_them(exported, photos, tmp_path):
    out = tmp_path / "bulk"
    _bulk(exported, photos, out)
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*_x4.png")}
    again = _bulk(exported, photos, out)
    assert again["counts"] == {"ok": 0, "skipped": 5, "failed": 2}
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*_x4.png")} == stamps
    redone = _bulk(exported, photos, out, overwrite=True)
    assert redone["counts"]["ok"] == 5 and all(p.stat().st_mtime_ns != stamps[p.name] for p in out.glob("*_x4.png"))


def test_inputs_that_would_share_an_output_are_refused(exported, tmp_path, rng):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(tmp_path / folder / "same.png")
    result = run(BulkConfig((str(tmp_path / "a" / "*"), str(tmp_path / "b" / "*")), str(tmp_path / "out"),
                            exported[0]))
    assert result["counts"] == {"ok": 0, "skipped": 0, "failed": 2}
    assert all("would all be written as same_x4.png" in r["reason"] for r in result["records"])


def test_overlapping_patterns_are_one_input_and_an_input_is_never_an_output(exported, tmp_path, rng):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("plain", "plain_x4", "photo"):
        Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(folder / f"{name}.png")
    before = (folder / "plain_x4.png").read_bytes()
    # -o is the input folder: plain.png's output would be the user's plain_x4.png, itself an input.
    result = run(BulkConfig((str(folder / "*.png"), str(folder / "p*.png")), str(folder), exported[0],
                            overwrite=True))
    records = {r["input"].rsplit("/", 1)[1]: r for r in result["records"]}
    assert len(result["records"]) == 3  # photo.png matched twice, counted once
    assert records["photo.png"]["status"] == "ok"
    assert records["plain.png"]["status"] == "failed" and "is one of the inputs" in records["plain.png"]["reason"]
    assert records["plain_x4.png"]["status"] == "ok"  # its own output, plain_x4_x4.png, is new
    assert (folder / "plain_x4.png").read_bytes() == before


def test_an_onnx_worker_loads_its_model_without_importing_tensorflow(exported):
    """Every Beam worker process loads the model: ONNX Runtime alone starts in a fraction of TensorFlow's time."""
    import subprocess
    import sys
    code = ("import sys, numpy as np; from serving.local import batch_upscaler; "
            f"run = batch_upscaler({str(exported[0])!r}, 'onnx', threads=1); "
            "assert run(np.zeros((1, 8, 8, 3), np.uint8)).shape == (1, 32, 32, 3); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'tensorflow'))")
    repository_root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=repository_root)
    assert result.stdout.strip() == "[]"


def test_the_command_line_runs_and_passes_beams_own_options_through(exported, tmp_path, rng):
    """`python -m serving.bulk` as a user types it, with a Beam option among ours: it reaches Beam, not a field
    of ours (it once landed in `threads` and every input crashed ONNX Runtime)."""
    from serving.bulk import parse_args
    from tests.helpers import run_module
    config = parse_args(["in/*.png", "-o", "out", "--threads", "2", "--runner", "DirectRunner", "--tile", "64"])
    assert config.threads == 2 and config.tile == 64 and config.pipeline_args == ("--runner", "DirectRunner")
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(rng.integers(0, 256, (20, 16, 3), dtype=np.uint8)).save(folder / "a.png")
    result = run_module("serving.bulk", str(folder / "*.png"), "-o", str(tmp_path / "out"), "--model-dir",
                        str(exported[0]), "--direct_num_workers", "1")
    assert result.returncode == 0, result.stderr[-2000:]
    assert Image.open(tmp_path / "out" / "a_x4.png").size == (64, 80)
    assert "Traceback" not in result.stderr
