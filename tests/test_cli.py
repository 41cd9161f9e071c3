"""The command-line layer every entry point shares (core.cli): quiet TensorFlow, one-sentence errors,
--help with defaults."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from core.cli import TENSORFLOW_LOG_LINE
from tests.helpers import REPO, run_module

IMPORT_AND_RUN = ("import sys, serving; print('ours before', file=sys.stderr); import tensorflow as tf; "
                  "tf.constant(1.0) + 1; print('ours after', file=sys.stderr)")


def _tensorflow_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if TENSORFLOW_LOG_LINE.match(line.encode())]


def _python(code: str, **env) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "SRGAN_VERBOSE",
                                                                "_SRGAN_SET_TF_LOG_LEVEL")}
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**clean, **env})


@pytest.mark.slow  # a Python process that imports TensorFlow
def test_tensorflow_start_up_lines_are_kept_off_stderr_but_ours_are_not():
    quiet = _python(IMPORT_AND_RUN)
    assert quiet.returncode == 0, quiet.stderr
    assert _tensorflow_lines(quiet.stderr) == [], quiet.stderr
    assert "ours before" in quiet.stderr and "ours after" in quiet.stderr


@pytest.mark.slow  # a Python process that imports TensorFlow
def test_srgan_verbose_shows_tensorflows_own_lines():
    verbose = _python(IMPORT_AND_RUN, SRGAN_VERBOSE="1")
    assert verbose.returncode == 0, verbose.stderr
    assert _tensorflow_lines(verbose.stderr), verbose.stderr  # what the quiet run hides is really there


@pytest.mark.parametrize("flags, sentence", [  # refused before TensorFlow is imported: fast
    (["--channels", "0"], "--channels must be positive, got 0."),
    (["--log-every", "0"], "--log-every must be at least 1, got 0."),
    (["--checkpoint-every", "0"], "--checkpoint-every must be at least 1, got 0."),
    (["--batch-size", "-2"], "--batch-size must be at least 1, got -2."),
    (["--crop-size", "30"], "--crop-size must be a multiple of the scale (4), got 30."),
    (["--learning-rate", "0"], "--learning-rate must be a positive number, got 0.0."),
    (["--residual-blocks", "-1"], "--residual-blocks must be 0 or more, got -1."),
])
def test_a_bad_training_number_is_one_sentence_and_exit_2(flags, sentence, tmp_path):
    result = run_module("training.run", *flags, "--run-dir", str(tmp_path / "run"), timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [f"error: {sentence}"]
    assert not (tmp_path / "run").exists()


def test_training_help_shows_every_presets_defaults():
    result = run_module("training.run", "--help", timeout=60)
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "(demo: 24, photos: 15000, photos-gan: 0, seed: 0)" in text  # --pretrain-steps
    assert "--epochs EPOCHS (demo: 2, photos: 3, photos-gan: 16, seed: 60)" in text
    assert ("--learning-rate LEARNING_RATE Adam learning rate (article: 1e-4) (demo: 0.0001, photos: 0.0002, "
            "photos-gan: 2e-05") in text
    assert "--out-dir" not in text and "--run-dir" in text


def test_old_spellings_are_gone(tmp_path, capsys):
    """A 0.1 package keeps one spelling per flag: the old ones are refused as any unknown flag is."""
    from export.run import parse_args as export_args
    from serving.tf_serving import parse_args as tf_serving_args
    from serving.upscale import parse_args as upscale_args
    from training.config import config_from_args
    assert config_from_args(["--run-dir", str(tmp_path)]).out_dir == tmp_path
    assert export_args([]).repository == Path("models")
    assert upscale_args(["a.png", "-o", str(tmp_path)]).out == tmp_path
    for parse, old in [(config_from_args, ["--out-dir", str(tmp_path)]), (export_args, ["--model-dir", str(tmp_path)]),
                       (lambda argv: upscale_args(["a.png", "-o", "x", *argv]), ["--out-dir", str(tmp_path)]),
                       (tf_serving_args, ["--image", "example/serving:1"]), (upscale_args, ["a.png"])]:
        with pytest.raises(SystemExit) as refused:
            parse(old)
        assert refused.value.code == 2, old
    assert "the following arguments are required: -o/--out" in capsys.readouterr().err


@pytest.mark.slow  # a Python process that imports TensorFlow
def test_a_server_that_cannot_start_is_reported_with_its_own_words(tmp_path):
    from serving.process import EmbeddedServer
    from core.cli import UserError
    with pytest.raises(UserError, match=r"(?s)did not start \(exit status 2\).*is not a folder"):
        EmbeddedServer("--model_base_path", str(tmp_path / "missing"), timeout=60, cwd=REPO)


def test_the_server_logs_with_timestamps_and_prints_one_ready_line(exported):
    from serving.process import free_port
    from tests.helpers import ServerProcess
    rest_port = free_port()
    server = ServerProcess("--model_base_path", str(exported[0].parent), "--rest_api_port", str(rest_port))
    assert server.stop() == 0
    lines = server.lines
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d INFO "
    for pattern in (stamp + r"serving\.manager: loaded srgan version 1 \(savedmodel\) in [\d.]+ s; [\d.]+ µs per "
                           r"input pixel here \(a 128×128 request: about [\d.]+ s\); a batch of 8 32×32 images runs "
                           r"[\d.]+× as fast as one by one: server-side batching (pays|costs|makes little difference) "
                           r"here$",
                    stamp + rf"serving\.server: REST API .* on 127\.0\.0\.1:{rest_port}$",
                    stamp + r"serving\.server: stopped$"):
        assert any(re.match(pattern, line) for line in lines), (pattern, "".join(lines))
    assert [line for line in lines if line.startswith("listening on ")] == [f"listening on {server.target}\n"]
    assert "Logging error" not in "".join(lines) and not _tensorflow_lines("".join(lines))
