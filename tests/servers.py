"""Helpers for tests that run the embedded server as a real process on 127.0.0.1."""

import shutil
import signal
import subprocess
import sys
import threading
import time

import grpc
from tensorflow.core.framework import tensor_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from serving import tensors
from tests.conftest import REPO


class ServerProcess:
    def __init__(self, *args: str):
        self.proc = subprocess.Popen([sys.executable, "-m", "serving.server", "--port", "0", *args], cwd=REPO,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.lines.append(line)
            if line.startswith("listening on"):
                self.target = line.split()[-1]
                threading.Thread(target=self._drain_output, daemon=True).start()
                return
        self.proc.kill()
        raise RuntimeError("server did not start:\n" + "".join(self.lines))

    def _drain_output(self):
        for line in self.proc.stdout:
            self.lines.append(line)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=60)
        finally:
            self.proc.kill()


def copy_version(src, base, version):
    staging = base / f".copy-{version}"
    shutil.copytree(src, staging)
    staging.rename(base / str(version))  # appears atomically, as export does it


def raw_predict(target, inputs, name="srgan", signature="", version=None, label=None, output_filter=(),
                timeout=60):
    request = predict_pb2.PredictRequest(output_filter=list(output_filter))
    request.model_spec.name = name
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    if label:
        request.model_spec.version_label = label
    for key, value in inputs.items():
        request.inputs[key].CopyFrom(value if isinstance(value, tensor_pb2.TensorProto) else tensors.to_proto(value))
    with grpc.insecure_channel(target, options=[("grpc.max_send_message_length", 1 << 30),
                                                ("grpc.max_receive_message_length", -1)]) as channel:
        return prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=timeout)
