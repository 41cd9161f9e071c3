"""Every command the README and docs/ show, run as a user types it: one table says which tests run each one
(through its `python -m …`, `python benchmarks/….py` or `make …` entry point, in a subprocess) on a real input, and
every command gets the same refusal test here (a flag that does not exist: one sentence, exit status 2, no
traceback). A command documented later without a row fails `test_every_documented_command_has_a_row`."""

import ast
import re
import subprocess
import sys

import pytest

from tests.helpers import REPO

DOCUMENTED = re.compile(r"\bpython3? (-m [a-z_][a-z_.]*[a-z_]|benchmarks/[a-z_]+\.py)|\bmake (demo|test-fast|test|serve)\b")

# command → the tests (file::function) that run it as typed on a real input.
COMMANDS = {
    "training.run": ["test_training.py::test_killed_run_resumes_from_its_checkpoint_with_the_same_step_count",
                     "test_cli.py::test_a_bad_training_number_is_one_sentence_and_exit_2"],
    "training.publish": ["test_commands.py::test_publish_as_typed"],
    "training.cluster": ["test_commands.py::test_cluster_manifests_as_typed"],
    "export.to_onnx": ["test_export.py::test_fp16_variant_has_its_own_tolerance",
                       "test_export.py::test_bad_input_is_one_sentence_and_exit_2"],
    "export.push": ["test_gate.py::test_no_bless_publishes_and_records_it_as_not_blessed_and_push_refuses_it"],
    "serving.server": ["test_serving.py::test_version_labels_and_explicit_versions_with_a_model_config_file"],
    "serving.upscale": ["test_serving.py::test_upscale_command_through_grpc"],
    "serving.bulk": ["test_bulk.py::test_the_command_line_runs_and_passes_beams_own_options_through"],
    "serving.tf_serving": ["test_tf_serving.py::test_command_prints_both_commands"],
    "workflows.demo": ["test_demo.py::test_the_demo_serves_two_models_from_one_server",
                       "test_demo.py::test_the_demo_refuses_two_folders_of_one_name"],
    "workflows.web_page": ["test_web_page.py::test_the_screenshot_command_as_typed"],
    "benchmarks/quality.py": ["test_quality.py::test_quality_benchmark_scores_a_training_run_as_typed"],
    "benchmarks/latency.py": ["test_latency.py::test_latency_benchmark_with_a_tiny_sweep"],
    "benchmarks/server_backend.py": ["test_latency.py::test_server_backend_benchmark_runs_without_tensorflow"],
    "benchmarks/onnx_profile.py": ["test_commands.py::test_onnx_profile_as_typed"],
    "benchmarks/onnx_providers.py": ["test_commands.py::test_small_benchmark_runs_as_typed"],
    "benchmarks/bulk.py": ["test_commands.py::test_small_benchmark_runs_as_typed"],
    "benchmarks/train_throughput.py": ["test_commands.py::test_small_benchmark_runs_as_typed"],
    "benchmarks/server_memory.py": ["test_commands.py::test_small_benchmark_runs_as_typed"],
    "benchmarks/precision_curve.py": ["test_commands.py::test_small_benchmark_runs_as_typed"],
    "make demo": ["the README's first quick-start command; CI and each session run it on a fresh clone"],
    "make test": ["the README's second quick-start command: .ci/run runs it"],
    "make test-fast": ["test_commands.py::test_make_test_fast_is_the_fast_subset"],
    "make serve": ["test_web_page.py::test_make_serve_as_typed_prints_the_page_address"],
}
# Documented, and refused here as typed, but no test runs them on a real input yet. Empty: a new command may not
# join it without saying why here.
NOT_YET_RUN: set[str] = set()


OURS = {"core", "training", "export", "serving", "workflows"}


def documented_commands() -> set[str]:
    found = set()
    for page in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for match in DOCUMENTED.finditer(page.read_text()):
            entry = match.group(1) or f"make {match.group(2)}"
            entry = entry.removeprefix("-m ")
            if entry.split(".")[0] in OURS or not entry[0].isalpha() or "/" in entry or entry.startswith("make "):
                found.add(entry)  # not pip or pytest: their commands are theirs
    return found


def test_every_documented_command_has_a_row():
    documented = documented_commands()
    assert {"training.run", "export.to_onnx", "serving.server", "benchmarks/latency.py", "make demo"} <= documented
    missing = documented - set(COMMANDS) - NOT_YET_RUN
    assert not missing, f"documented but run by no test: {sorted(missing)}"
    assert not NOT_YET_RUN & set(COMMANDS)


def test_the_row_check_sees_a_new_command():
    assert DOCUMENTED.search("run `python -m serving.new_thing --flag`").group(1) == "-m serving.new_thing"
    assert DOCUMENTED.search("then `python benchmarks/new.py`").group(1) == "benchmarks/new.py"
    assert DOCUMENTED.search("`make serve` after").group(2) == "serve"


def _test_source(node_id: str) -> str | None:
    file_name, _, function = node_id.partition("::")
    path = REPO / "tests" / file_name
    if not path.is_file():
        return None
    text = path.read_text()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.FunctionDef) and node.name == function:  # with its decorators (parametrize)
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            return "\n".join(text.splitlines()[first - 1:node.end_lineno])
    return None


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_each_row_names_a_test_that_runs_the_command(command):
    for node_id in COMMANDS[command]:
        if "::" not in node_id:
            continue  # a reason, not a test (the suite and the quick start)
        source = _test_source(node_id)
        assert source is not None, f"{node_id} does not exist"
        spelled = {"make": command.removeprefix("make ")}.get(command.split()[0], command)
        assert f'"{spelled}"' in source or f"'{spelled}'" in source or spelled.rsplit("/", 1)[-1] in source, \
            f"{node_id} does not run {command}"


def _argv(command: str) -> list[str]:
    if command.startswith("benchmarks/"):
        return [sys.executable, command]
    return [sys.executable, "-m", command]


@pytest.mark.parametrize("command", sorted(c for c in documented_commands() if not c.startswith("make ")))
def test_a_flag_that_does_not_exist_is_one_sentence_and_exit_2(command):
    """(Commands with required arguments name those first: as refused, in one sentence.)"""
    result = subprocess.run([*_argv(command), "--no-such-flag"], cwd=REPO, capture_output=True, text=True,
                            timeout=180)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(("error:", f"{command.rsplit('/', 1)[-1]}: error:")) or ": error: " in last, last
    assert "--no-such-flag" in last or "the following arguments are required" in last, last


@pytest.mark.slow
def test_publish_as_typed(trained_run, tmp_path):
    out = tmp_path / "shipped"
    done = subprocess.run([sys.executable, "-m", "training.publish", "--run-dir", str(trained_run), "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert {"generator.weights.h5", "model.json", "card.json"} <= {p.name for p in out.iterdir()}
    again = subprocess.run([sys.executable, "-m", "training.publish", "--run-dir", str(tmp_path / "nowhere"),
                            "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "Traceback" not in again.stderr


def test_cluster_manifests_as_typed(tmp_path):
    done = subprocess.run([sys.executable, "-m", "training.cluster", str(tmp_path / "deploy"), "--workers", "4",
                           "--image", "registry.example.com/srgan-toolkit:0.1", "--", "--preset", "photos"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    written = sorted(p.name for p in (tmp_path / "deploy").rglob("*.yaml"))
    assert written, done.stdout
    refused = subprocess.run([sys.executable, "-m", "training.cluster", str(tmp_path / "d2"), "--workers", "0"],
                             cwd=REPO, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr


@pytest.mark.slow
def test_onnx_profile_as_typed(exported, tmp_path):
    done = subprocess.run([sys.executable, "benchmarks/onnx_profile.py", str(exported[0] / "model.onnx"), "--runs",
                           "1", "--warmup", "0", "--out", str(tmp_path / "profile")],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert any((tmp_path / "profile").iterdir())


def test_make_test_fast_is_the_fast_subset():
    """`make test-fast` runs pytest on the tests not marked slow (running it here would run the suite twice)."""
    dry = subprocess.run(["make", "-n", "test-fast"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert dry.returncode == 0 and '-m pytest -q -m "not slow"' in dry.stdout


def _benchmark_args(script: str, exported, trained_run, tmp_path) -> list[str]:
    """The smallest real run of each benchmark: tiny inputs, one point, one step."""
    version = str(exported[0])
    if script == "onnx_providers.py":
        return ["--model-dir", version, "--seconds", "0.05", "--warmup", "1"]
    if script == "bulk.py":
        from PIL import Image
        images = tmp_path / "images"
        images.mkdir()
        for index in range(2):
            Image.new("RGB", (24, 16), (40 * index, 90, 200)).save(images / f"{index}.png")
        return ["--model-dir", str(exported[0].parent), "--images", str(images)]
    if script == "train_throughput.py":
        return ["--batch-size", "1", "--steps", "1", "--warmup", "1", "--content-loss", "mse", "--compile", "graph",
                "--follow-steps", "0", "--cache-dir", str(tmp_path / "cache")]
    if script == "server_memory.py":
        return ["--model-dir", str(exported[0].parent), "--sizes", "32"]
    metrics = str(trained_run / "metrics.jsonl")  # precision_curve.py
    return ["--run", f"a={metrics}", "--run", f"b={metrics}"]


@pytest.mark.slow
@pytest.mark.parametrize("script", ["onnx_providers.py", "bulk.py", "train_throughput.py", "server_memory.py",
                                    "precision_curve.py"])
def test_small_benchmark_runs_as_typed(script, exported, trained_run, tmp_path):
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, f"benchmarks/{script}", *_benchmark_args(script, exported, trained_run,
                                                                                  tmp_path), "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert out.exists() and any(out.rglob("*")), done.stdout[-2000:]
