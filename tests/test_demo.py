"""`python -m workflows.demo`, the quick start's serving step, as `make demo` types it: two models from one
server through TF Serving's model config, each answer checked against ONNX Runtime and scored."""

import re

from tests.helpers import copy_version, run_module


def test_the_demo_serves_two_models_from_one_server(exported, tmp_path):
    models = tmp_path / "models"
    for name in ("srgan", "srgan_gan"):
        copy_version(exported[0], models / name, 1)
    result = run_module("workflows.demo", "--model-dir", str(models / "srgan"), "--model-dir",
                        str(models / "srgan_gan"), "--out", str(tmp_path / "results"), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-2000:]
    for name in ("srgan", "srgan_gan"):
        line = next(line for line in result.stdout.splitlines() if line.strip().startswith(f"{name} (version 1"))
        assert re.search(r"PSNR \d+\.\d\d dB, SSIM [\d.]+, NIQE \d+\.\d\d", line)
        assert "max difference 0" in line or "max difference 1" in line
        assert (tmp_path / "results" / f"grace_hopper_{name}_grpc_x4.png").is_file()
    assert 'name: "srgan_gan"' in (tmp_path / "results" / "models.config").read_text()
    assert "server stopped on SIGTERM, exit status 0" in result.stdout


def test_the_demo_refuses_two_folders_of_one_name(tmp_path):
    for parent in ("a", "b"):
        (tmp_path / parent / "srgan").mkdir(parents=True)
    result = run_module("workflows.demo", "--model-dir", str(tmp_path / "a" / "srgan"), "--model-dir",
                        str(tmp_path / "b" / "srgan"), timeout=120)
    assert result.returncode == 2 and "the same name" in result.stderr and "Traceback" not in result.stderr
