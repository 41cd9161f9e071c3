"""The deployment gate's serving check (TFX's InfraValidator, LOAD_AND_QUERY): the staged version is loaded by a
real server process and queried over gRPC before it is published.

The server is `tensorflow_model_server` where it is on PATH, else our embedded server (which loads the way TF
Serving does: graph-mode SavedModel, warm-up records replayed at load). It reads a temporary model folder whose
only version is a copy of the staged folder, so nothing in the repository becomes visible. Passed when the version
is AVAILABLE within the time limit, every warm-up record is answered over gRPC, and a real photograph's answer
equals the parity reference (parity's uint8 tolerance).
"""

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import grpc


def _start_server(model_path: Path, model_name: str, timeout: float):
    """(process, gRPC target, which server) for a model folder."""
    binary = shutil.which("tensorflow_model_server")
    if binary:
        from serving.process import die_with_parent, free_port
        port = free_port()
        process = subprocess.Popen([binary, f"--port={port}", "--rest_api_port=0", f"--model_name={model_name}",
                                    f"--model_base_path={model_path.resolve()}", "--enable_model_warmup=true"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=die_with_parent)
        return process, f"127.0.0.1:{port}", "tensorflow_model_server"
    from serving.process import EmbeddedServer
    server = EmbeddedServer("--model_name", model_name, "--model_base_path", str(model_path), timeout=timeout)
    return server.proc, server.target, "serving.server"


def _load_failed(process):
    """Why waiting for the staged version is over: the server died, or the version ended without loading."""
    def reason(statuses: list[dict]) -> str | None:
        if process.poll() is not None:
            return f"the server exited with status {process.returncode} while loading"
        ended = [s for s in statuses if s["state"] == "END"]
        return f"the version did not load: {ended[0]['error'] or 'state END'}" if ended else None
    return reason


def _replay_warmup_over_grpc(version_dir: Path, target: str, model_name: str, timeout: float) -> int:
    """Each warm-up PredictRequest sent to the server as a client would; returns how many were answered."""
    from core.repository import WARMUP_FILE
    from serving.warmup import read_warmup_requests
    from tensorflow_serving.apis import prediction_service_pb2_grpc
    requests = read_warmup_requests(version_dir / WARMUP_FILE)
    with grpc.insecure_channel(target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        for i, request in enumerate(requests):
            request.model_spec.name = model_name
            try:
                stub.Predict(request, timeout=timeout)
            except grpc.RpcError as error:
                raise RuntimeError(f"warm-up request {i + 1} answered {error.code().name}: {error.details()}") from None
    return len(requests)


def validate(version_dir: Path, version: int, model_name: str, photo, reference, tolerance,
             timeout: float) -> dict:
    """LOAD_AND_QUERY on a staged version. `photo` is (name, uint8 H×W×3), `reference` the parity reference
    backend. The outcome (never raises for a failing model): {"passed", "server", "seconds", …, "reason"}."""
    from export import parity
    from serving.client import SrganClient
    started = time.monotonic()
    base = Path(tempfile.mkdtemp(prefix="srgan-infra-"))
    model_path = base / model_name
    model_path.mkdir()
    # A copy, not a link: servers refuse a version that leads outside their base path (ours does).
    shutil.copytree(version_dir, model_path / str(version))
    outcome = {"passed": False, "server": None}
    process = None
    try:
        process, target, outcome["server"] = _start_server(model_path, model_name, timeout)
        with SrganClient(target, model_name, timeout=timeout, retries=0) as client:
            client.wait_until_available(started + timeout - time.monotonic(), give_up=_load_failed(process))
            outcome["available_after_s"] = round(time.monotonic() - started, 2)
            outcome["warmup_requests_answered"] = _replay_warmup_over_grpc(version_dir, target, model_name, timeout)
            name, image = photo
            served = parity.Backend("grpc", None, client.upscale)
            report = parity.compare(reference, [served], [parity.Case(f"photograph {name}", image[None])], tolerance)
            pair = report["pairs"][0]
            outcome["photograph"] = {"name": name, "shape": list(image.shape),
                                     **{k: pair[k] for k in ("identical", "max_uint8_diff", "error") if k in pair}}
            if not pair["passed"]:
                why = pair.get("error") or f"max uint8 difference {pair['max_uint8_diff']}"
                raise RuntimeError(f"the answer for {name} differs from the parity reference ({why})")
        outcome["passed"] = True
    except Exception as error:  # noqa: BLE001 - every failure is the candidate's verdict, with its reason
        from serving.client_base import ServingClientError
        from serving.errors import describe
        outcome["reason"] = error.message if isinstance(error, ServingClientError) else describe(error)
    finally:
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(base, ignore_errors=True)
    outcome["seconds"] = round(time.monotonic() - started, 2)
    return outcome
