"""The real TF Serving: its configuration is checked here; the binary itself runs where it is installed."""

import os
import re
import shutil

import numpy as np

import pytest
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from serving.client import SrganClient
from serving.tf_serving import GPU_BATCH_THREADS, TfServingConfig, docker_command, server_command, start_and_wait, write_configs
from tests.helpers import run_module


def test_configs_parse_as_tf_serving_protos(tmp_path):
    config = TfServingConfig(model_base_path=tmp_path / "srgan", config_dir=tmp_path / "cfg", num_versions=2,
                             labels=(("stable", 1), ("canary", 2)))
    files = write_configs(config)
    parsed = text_format.Parse(files["models"].read_text(), model_server_config_pb2.ModelServerConfig())
    (model,) = parsed.model_config_list.config
    assert model.name == "srgan" and model.base_path == str((tmp_path / "srgan").resolve())
    assert model.model_version_policy.latest.num_versions == 2
    assert dict(model.version_labels) == {"stable": 1, "canary": 2}
    batching = files["batching"].read_text()  # (BatchingParameters' proto is not in tensorflow-serving-api)
    # Requests up to 64 images are accepted and split into executed batches of 8; padding stays off, so
    # clients must send one image size (SrganClient's tiles).
    for line in ("max_batch_size { value: 64 }", "max_execution_batch_size { value: 8 }",
                 "enable_large_batch_splitting: true", "pad_variable_length_inputs: false",
                 f"num_batch_threads {{ value: {os.cpu_count() or 1} }}"):  # this host is the target
        assert line in batching.splitlines(), line
    assert "prometheus_config" in files["monitoring"].read_text()
    command = server_command(config, files)
    assert command[0] == "tensorflow_model_server" and "--enable_batching=true" in command
    assert any(flag.startswith("--batching_parameters_file=") for flag in command)
    assert "--allow_version_labels_for_unavailable_models=true" in command  # labels refused at start otherwise
    docker = docker_command(config)
    assert "--gpus" in docker and f"{(tmp_path / 'srgan').resolve()}:/models/srgan:ro" in docker
    assert "tensorflow/serving:2.21.0-gpu" in docker  # the release that matches our TensorFlow, pinned
    gpu = write_configs(TfServingConfig(config_dir=tmp_path / "gpu"), "/models/srgan", gpu=True)
    # The GPU image's threads come from that target, not from this host.
    assert f"num_batch_threads {{ value: {GPU_BATCH_THREADS} }}" in gpu["batching"].read_text().splitlines()


def test_the_embedded_server_reads_the_same_models_config(exported, tmp_path):
    config = TfServingConfig(model_base_path=exported[0].parent, config_dir=tmp_path)
    files = write_configs(config)
    from serving.server import ModelServer, ServerConfig
    server = ModelServer(ServerConfig(port=0, model_config_file=files["models"], file_system_poll_wait_seconds=0))
    port = server.start()
    try:
        with SrganClient(f"127.0.0.1:{port}") as client:
            assert client.status()[0]["state"] == "AVAILABLE"
    finally:
        server.stop()


def test_command_prints_both_commands(exported, tmp_path):
    result = run_module("serving.tf_serving", "--model_base_path", str(exported[0].parent), "--config_dir",
                        str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "tensorflow_model_server --port=8500" in result.stdout and "docker run" in result.stdout
    # --enable_batching auto: the local command batches only where a batch was measured to pay, and says so
    measured = re.search(r"server-side batching (on|off) \(a batch of 8 32×32 images runs ([\d.]+)×", result.stdout)
    assert measured, result.stdout
    on, gain = measured.group(1) == "on", float(measured.group(2))
    assert on == (gain >= 1.1) and ("--enable_batching=true" in result.stdout.split("docker run")[0]) == on
    assert "--enable_batching=true" in result.stdout.split("docker run")[1]  # the GPU image always batches
    forced = run_module("serving.tf_serving", "--model_base_path", str(exported[0].parent), "--config_dir",
                        str(tmp_path), "--enable_batching", "false")
    assert "server-side batching off (--enable_batching false)" in forced.stdout
    assert "--enable_batching=true" not in forced.stdout.split("docker run")[0]


@pytest.mark.skipif(shutil.which("tensorflow_model_server") is None,
                    reason="tensorflow_model_server is not installed here (no package carries it); "
                           "this test runs wherever it is on PATH")
def test_real_tf_serving_serves_the_exported_model(exported, tmp_path):
    config = TfServingConfig(model_base_path=exported[0].parent, config_dir=tmp_path, port=18500,
                             rest_api_port=18501)
    process = start_and_wait(server_command(config, write_configs(config)), config)
    try:
        with SrganClient("127.0.0.1:18500") as client:
            assert client.upscale(np.zeros((1, 8, 8, 3), np.uint8)).shape == (1, 32, 32, 3)
    finally:
        process.terminate()
        process.wait()


def test_a_malformed_label_is_one_sentence_and_exit_2():
    from tests.helpers import run_module
    result = run_module("serving.tf_serving", "--label", "stable", timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: --label wants NAME=VERSION (for example stable=3), got 'stable'."


def test_a_server_that_exits_while_loading_is_one_sentence_not_a_wait(tmp_path):
    """start_and_wait gives up when the process ends, instead of polling until its time limit."""
    import sys
    import time

    from core.cli import UserError
    started = time.monotonic()
    with pytest.raises(UserError, match=r"^tensorflow_model_server exited with status 3\.$"):
        start_and_wait([sys.executable, "-c", "import sys; sys.exit(3)"],
                       TfServingConfig(model_base_path=tmp_path, config_dir=tmp_path, port=18777), timeout=60)
    assert time.monotonic() - started < 30
