"""The deployment gate: a version reaches the served folder only when it is blessed (export.bless, export.infra),
and export.push promotes only blessed versions, with TF Serving's version labels."""

import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from core.repository import parse_version, version_dirs
from export.run import ExportConfig, export
from export.bless import Thresholds
from tests.helpers import LOOSE_GATE, REPO, ServerProcess, gate_photographs, raw_predict, run_module

LOOSE = Thresholds(min_gain=-100, min_worst_gain=-100, max_colour_shift=255)
assert LOOSE_GATE == ["--min-gain", "-100", "--min-worst-gain", "-100", "--max-colour-shift", "255"]  # the same


def _blessing(version_dir) -> dict:
    return json.loads((version_dir / "blessing.json").read_text())


@pytest.fixture(scope="module")
def development(trained_run, tmp_path_factory):
    """A development repository whose versions 1 and 2 are the 3-step model, blessed under loose thresholds."""
    base = tmp_path_factory.mktemp("development")
    photos = gate_photographs(base / "photos")
    config = ExportConfig(run_dir=trained_run, repository=base / "models", eval_images=photos, thresholds=LOOSE)
    return [export(config)[0] for _ in range(2)]


def test_a_model_worse_than_bicubic_is_refused_and_kept_where_no_server_looks(trained_run, tmp_path):
    photos = gate_photographs(tmp_path / "photos")
    result = run_module("export.to_onnx", "--run-dir", str(trained_run), "--repository", str(tmp_path / "models"),
                        "--eval-images", str(photos))
    assert result.returncode == 3, result.stdout[-2000:] + result.stderr[-2000:]
    model = tmp_path / "models" / "srgan"
    assert version_dirs(model) == {} and sorted(os.listdir(model)) == [".export.lock", ".rejected"]
    assert parse_version(".rejected") is None  # TF Serving's version rule (and ours) ignores the folder
    blessing = _blessing(model / ".rejected" / "1")
    assert blessing["blessed"] is False and blessing["baseline"] is None
    failed = [c["name"] for c in blessing["checks"] if not c["ok"]]
    assert "mean PSNR gain over bicubic" in failed and "mean PSNR gain over bicubic" in blessing["reasons"][0]
    assert blessing["infra_validation"]["passed"]  # it loads and answers: refused for its quality alone
    assert blessing["thresholds"] == {"min_gain": 0.0, "min_worst_gain": -0.5, "max_colour_shift": 1.0,
                                      "max_mean_drop": 0.05, "max_photo_drop": 0.3, "min_niqe_gain": 0.1,
                                      "perceptual_min_worst_gain": -1.0, "max_niqe_rise": 0.1,
                                      "perceptual_max_mean_drop": 0.5}
    assert blessing["objective"] == "distortion" and blessing["psnr_reference"] is None
    assert sorted(blessing["evaluation"]["images"]) == ["chelsea", "coffee"]
    assert "NOT BLESSED" in result.stdout and str(model / ".rejected" / "1") in result.stdout
    assert "**FAIL**" in result.stdout


def test_a_model_worse_than_the_baseline_is_refused_that_without_a_baseline_is_blessed(trained_run, development,
                                                                                        tmp_path):
    first = _blessing(development[0])  # the 3-step model, alone in its repository: blessed
    assert first["blessed"] and first["baseline"] is None and {c["kind"] for c in first["checks"]} == {"value"}
    assert _blessing(development[1])["baseline"]["version"] == 1  # the same model again: no drop, blessed
    assert _blessing(development[1])["blessed"]
    # The shipped generator, blessed by the default thresholds, becomes the baseline of a repository.
    repository = tmp_path / "models"
    shipped, report = export(ExportConfig(weights=REPO / "training" / "pretrained" / "photos", repository=repository,
                                          run_dir=None, eval_images=gate_photographs(tmp_path / "two")))
    assert report["passed"] and _blessing(shipped)["blessed"], _blessing(shipped)["reasons"]
    # The 3-step model, scored on one photograph more (so the baseline is scored again on these).
    three = gate_photographs(tmp_path / "three", ("chelsea.png", "coffee.png", "astronaut.png"))
    candidate, _ = export(ExportConfig(run_dir=trained_run, repository=repository, eval_images=three,
                                       thresholds=LOOSE))
    assert candidate == repository / "srgan" / ".rejected" / "2"
    assert sorted(version_dirs(repository / "srgan")) == [1]
    blessing = _blessing(candidate)
    assert blessing["baseline"]["version"] == 1 and blessing["baseline"]["how"].startswith("scored now")
    assert {c["kind"] for c in blessing["checks"] if not c["ok"]} == {"change"}
    assert sorted(blessing["baseline"]["images"]) == ["astronaut", "chelsea", "coffee"]


@pytest.mark.parametrize("fault", ["a corrupt warm-up file", "another answer"])
def test_infra_validation_refuses_a_version_that_cannot_load_or_answers_otherwise(trained_run, exported, tmp_path,
                                                                                  fault):
    from export import infra, parity
    from export.checkpoint import find_checkpoint, load_generator
    version = tmp_path / "version"
    shutil.copytree(exported[0], version)
    reference = parity.keras_backend(load_generator(find_checkpoint(trained_run, None)).model)
    if fault == "a corrupt warm-up file":
        warmup = version / "assets.extra" / "tf_serving_warmup_requests"
        warmup.write_bytes(warmup.read_bytes()[:40])
    else:
        reference = parity.Backend("wrong", reference.run_float, lambda images: np.zeros(
            (len(images), 4 * images.shape[1], 4 * images.shape[2], 3), np.uint8))
    photo = ("noise", np.random.default_rng(2).integers(0, 256, (24, 20, 3), dtype=np.uint8))
    outcome = infra.validate(version, 1, "srgan", photo, reference, parity.Tolerance(), timeout=120)
    assert outcome["passed"] is False
    assert ("warm-up" in outcome["reason"]) if fault == "a corrupt warm-up file" else (
        "differs from the parity reference" in outcome["reason"] and outcome["warmup_requests_answered"] == 2)
    assert outcome["server"] and outcome["seconds"] < 120


def test_no_bless_publishes_and_records_it_as_not_blessed_and_push_refuses_it(exported, tmp_path):
    version_dir, _ = exported  # exported with bless=False
    assert parse_version(version_dir.name) == 1 and version_dir.parent.name == "srgan"  # published
    blessing = _blessing(version_dir)
    assert blessing["blessed"] is False and blessing["skipped"] and "--no-bless" in blessing["reasons"][0]
    result = run_module("export.push", str(version_dir), str(tmp_path / "production"))
    assert result.returncode == 3 and "not blessed" in result.stderr
    assert not (tmp_path / "production").exists()


def test_push_copies_only_blessed_versions_atomically_and_moves_labels(development, exported, tmp_path, monkeypatch):
    from export.push import PushConfig, push
    production, config_file = tmp_path / "production", str(tmp_path / "models.config")
    first, second = development
    with pytest.raises(SystemExit):  # a canary before any stable: refused, and nothing is copied
        push(PushConfig(second, str(production), labels=("canary",), model_config=config_file))
    assert not (production / "srgan" / "2").exists() and not (tmp_path / "models.config").exists()
    assert push(PushConfig(first, str(production), promote=True, model_config=config_file))["copied"]
    assert push(PushConfig(second.parent, str(production), labels=("canary",), model_config=config_file))["copied"]
    model = production / "srgan"
    assert sorted(os.listdir(model)) == ["1", "2"]  # no staging folder left behind
    for source in (first, second):
        pushed = model / source.name
        assert sorted(p.relative_to(pushed) for p in pushed.rglob("*")) == sorted(
            p.relative_to(source) for p in source.rglob("*"))
        assert (pushed / "variables" / "variables.index").read_bytes() == (
            source / "variables" / "variables.index").read_bytes()
    # TF Serving's config, read by a real server: the labels name the versions.
    with ServerProcess("--model_config_file", config_file, "--allow_version_labels_for_unavailable_models") as server:
        for label, version in (("stable", 1), ("canary", 2)):
            answer = raw_predict(server.target, {"images": np.zeros((1, 8, 8, 3), np.uint8)}, label=label)
            assert answer.model_spec.version.value == version
    # Promote the canary: one command moves `stable`, and version 1 is no longer served.
    assert not push(PushConfig(second, str(production), promote=True, model_config=config_file))["copied"]
    text = open(config_file).read()
    assert 'key: "stable"\n      value: 2' in text and "canary" not in text and "versions: 1" not in text
    # A copy that fails half-way leaves no version and no staging folder.
    broken = tmp_path / "broken" / "srgan" / "1"
    shutil.copytree(first, broken)
    real_copy = tf.io.gfile.copy
    calls = []

    def failing_copy(*args, **kwargs):
        calls.append(args)
        if len(calls) == 3:
            raise OSError("disk full")
        return real_copy(*args, **kwargs)

    monkeypatch.setattr(tf.io.gfile, "copy", failing_copy)
    with pytest.raises(OSError):
        push(PushConfig(broken, str(tmp_path / "elsewhere")))
    assert os.listdir(tmp_path / "elsewhere" / "srgan") == []
    monkeypatch.undo()
    # An unblessed version is refused; any tf.io.gfile file system is a destination (here TensorFlow's ram://).
    with pytest.raises(SystemExit) as refused:
        push(PushConfig(exported[0], str(production)))
    assert refused.value.code == 3 and sorted(os.listdir(model)) == ["1", "2"]
    push(PushConfig(first, "ram://production"))
    assert tf.io.gfile.exists("ram://production/srgan/1/saved_model.pb")


def test_a_push_cut_short_on_an_object_store_is_completed_by_the_next(development, monkeypatch):
    """On an object store the files are written in place, saved_model.pb last; a copy that failed there left a
    version TF Serving cannot load, and the re-run must complete it rather than say "already in"."""
    from export.push import PushConfig, push
    first = development[0]
    real_copy = tf.io.gfile.copy

    def fail_at_the_graph(source, destination, overwrite=False):
        if destination.endswith("saved_model.pb"):
            raise OSError("connection reset")
        return real_copy(source, destination, overwrite=overwrite)

    monkeypatch.setattr(tf.io.gfile, "copy", fail_at_the_graph)
    with pytest.raises(OSError):
        push(PushConfig(first, "ram://cut/models"))
    assert tf.io.gfile.exists("ram://cut/models/srgan/1/export.json")
    assert not tf.io.gfile.exists("ram://cut/models/srgan/1/saved_model.pb")
    monkeypatch.undo()
    again = push(PushConfig(first, "ram://cut/models"))
    assert again["copied"]
    pushed = tf.io.gfile.GFile("ram://cut/models/srgan/1/saved_model.pb", "rb").read()
    assert pushed == (first / "saved_model.pb").read_bytes()
    assert not push(PushConfig(first, "ram://cut/models"))["copied"]  # complete now: nothing to copy


@pytest.mark.parametrize("flags, sentence", [
    (["--model-name", "../escaped"], "--model-name '../escaped' must be a plain folder name"),
    (["--label", "", "--model-config", "m.config"], "--label '' must be a plain word"),
    (["--label", "a b", "--model-config", "m.config"], "--label 'a b' must be a plain word"),
    (["--label", "x/y", "--model-config", "m.config"], "--label 'x/y' must be a plain word"),
])
def test_push_refuses_names_that_leave_the_repository_or_break_rest_paths(development, tmp_path, flags, sentence):
    result = run_module("export.push", str(development[0]), str(tmp_path / "production"), *flags)
    assert result.returncode == 2 and sentence in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "production").exists()


def test_push_to_a_file_is_one_sentence(development, tmp_path):
    (tmp_path / "a_file").write_text("x")
    result = run_module("export.push", str(development[0]), str(tmp_path / "a_file"))
    assert result.returncode == 2 and "is a file; pass a repository folder" in result.stderr
    assert "Traceback" not in result.stderr


def _scores(psnr: dict, bicubic: float = 30.0, shift: float = 0.5) -> dict:
    """training.evaluation.summarise's shape for a model whose photographs score `psnr`."""
    gains = {n: v - bicubic for n, v in psnr.items()}
    worst = min(gains, key=gains.get)
    return {"psnr": sum(psnr.values()) / len(psnr), "gain": sum(gains.values()) / len(gains), "worst": worst,
            "worst_gain": gains[worst], "images": {n: {"psnr": v, "colour_shift": [shift, -shift, 0.0]}
                                                   for n, v in psnr.items()}}


def test_value_thresholds_judge_alone_and_change_thresholds_only_against_a_baseline():
    from export.bless import checks
    candidate = _scores({"sky": 30.5, "cat": 31.0})
    alone = checks(candidate, None, Thresholds())
    assert [c["ok"] for c in alone] == [True, True, True] and {c["kind"] for c in alone} == {"value"}
    baseline = {"version": 4, "images": {"sky": {"psnr": 30.75}, "cat": {"psnr": 31.0}, "gone": {"psnr": 20.0}}}
    against = checks(candidate, baseline, Thresholds())
    drops = {c["name"]: c for c in against if c["kind"] == "change"}
    assert drops["mean PSNR drop against version 4"]["value"] == pytest.approx(0.125)  # common photographs
    assert not drops["mean PSNR drop against version 4"]["ok"]
    assert drops["largest PSNR drop on one photograph against version 4"]["detail"] == "sky"
    assert drops["largest PSNR drop on one photograph against version 4"]["ok"]  # 0.25 ≤ 0.3 dB
    assert [c["ok"] for c in checks(candidate, baseline, Thresholds(max_mean_drop=0.25))][3:] == [True, True]
    below = checks(_scores({"sky": 29.0, "cat": 31.5}, shift=3.0), None, Thresholds())
    assert [c["ok"] for c in below] == [True, False, False]  # mean +0.25 dB, sky −1 dB, a 3-level cast


def test_rejected_and_staging_folders_are_not_versions(tmp_path):
    model = tmp_path / "srgan"
    for name in (".rejected/1", ".rejected/1-2", ".staging-1-ab", "2"):
        (model / name).mkdir(parents=True)
    assert list(version_dirs(model)) == [2]


def test_a_label_change_moves_the_labels_and_serves_only_the_labelled_versions():
    from core.cli import UserError
    from export.push import updated_config
    with pytest.raises(UserError, match="no 'stable' label yet"):  # it would unload the version in service
        updated_config("", "srgan", "/srv/models/srgan", 4, ("canary",), promote=False)
    config = updated_config("", "srgan", "/srv/models/srgan", 3, (), promote=True)
    config = updated_config(config, "srgan", "/ignored", 4, ("canary",), promote=False)
    assert 'base_path: "/srv/models/srgan"' in config
    assert "versions: 3\n        versions: 4" in config and 'key: "canary"\n      value: 4' in config
    promoted = updated_config(config, "srgan", "/ignored", 4, (), promote=True)
    assert 'key: "stable"\n      value: 4' in promoted and "canary" not in promoted and "versions: 3" not in promoted
    rolled_back = updated_config(promoted, "srgan", "/ignored", 3, (), promote=True)
    assert 'key: "stable"\n      value: 3' in rolled_back and "versions: 4" not in rolled_back


def _perceptual(psnr: dict, niqe: float, bicubic: float = 30.0) -> dict:
    return {**_scores(psnr, bicubic), "niqe": niqe}


def test_a_perceptual_model_is_judged_by_niqe_with_a_psnr_floor():
    from export.bless import checks
    reference = {"model": "srgan version 3", "niqe": 6.0}
    sharper = _perceptual({"sky": 29.5, "cat": 31.5}, niqe=5.2)  # mean +0.5 dB, sky −0.5 dB, NIQE −0.8
    verdict = checks(sharper, None, Thresholds(), "perception", reference)
    assert [c["ok"] for c in verdict] == [True, True, True, True]
    assert verdict[0]["name"] == "mean NIQE below srgan version 3's (6.00)" and verdict[0]["value"] == 0.8
    # The PSNR model's rules would refuse it (sky −0.5 dB is at the distortion floor; NIQE is not looked at).
    assert [c["name"] for c in checks(sharper, None, Thresholds())][0] == "mean PSNR gain over bicubic"
    # No NIQE gain: refused, whatever its PSNR.
    same = checks(_perceptual({"sky": 31.0, "cat": 32.0}, niqe=5.9), None, Thresholds(), "perception", reference)
    assert [c["ok"] for c in same] == [False, True, True, True]
    # Against the newest blessed perceptual version: NIQE may not rise, PSNR may not fall far.
    baseline = {"version": 2, "niqe": 5.0, "images": {"sky": {"psnr": 29.5}, "cat": {"psnr": 31.5}}}
    changed = {c["name"]: c["ok"] for c in checks(sharper, baseline, Thresholds(), "perception", reference)}
    assert changed == {"mean NIQE below srgan version 3's (6.00)": True, "mean PSNR gain over bicubic": True,
                       "worst photograph's gain over bicubic": True, "largest colour shift": True,
                       "mean NIQE rise against version 2": False, "mean PSNR drop against version 2": True}


def test_the_psnr_baseline_is_found_in_the_repository(tmp_path):
    from export.bless import psnr_baseline, write_blessing
    from core.export_record import ExportRecord

    def version(model, number, objective, when, blessed=True):
        folder = tmp_path / model / str(number)
        folder.mkdir(parents=True)
        ExportRecord(objective=objective).save(folder)
        write_blessing(folder, {"blessed": blessed, "objective": objective, "evaluated_at": when})
        return folder
    version("srgan", 1, "distortion", "2026-12-01")
    newest = version("srgan", 2, "distortion", "2026-12-03")
    version("srgan", 3, "distortion", "2026-12-04", blessed=False)
    gan = version("srgan_gan", 1, "perception", "2026-12-05")
    assert psnr_baseline(tmp_path, exclude=gan.parent) == ("srgan", 2, newest)  # a repository
    assert psnr_baseline(tmp_path / "srgan") == ("srgan", 2, newest)  # a model folder
    assert psnr_baseline(newest) == ("srgan", 2, newest)  # a version
    assert psnr_baseline(tmp_path / "srgan_gan") is None  # only perceptual versions there


def test_a_perceptual_model_without_a_niqe_is_refused_saying_why():
    from export.bless import checks
    small = {**_scores({"sky": 31.0, "cat": 32.0}), "niqe": None}  # photographs under 192 pixels a side
    verdict = checks(small, None, Thresholds(), "perception", {"model": "bicubic", "niqe": None})
    assert verdict[0]["ok"] is False and "under 192 pixels" in verdict[0]["detail"]
