"""Helpers for tests that run the embedded server as a real process on 127.0.0.1."""

import shutil
import socket

import grpc
from tensorflow.core.framework import tensor_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from serving import tensors
from serving.process import EmbeddedServer
from tests.conftest import REPO


class ServerProcess(EmbeddedServer):
    """The embedded server started from the repository root, as the tests run it."""

    def __init__(self, *args: str):
        super().__init__(*args, timeout=120, cwd=REPO)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


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
