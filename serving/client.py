"""A client for TF Serving's gRPC API (the real server or serving.server) on the official stubs.

    with SrganClient("127.0.0.1:8500") as client:
        sr = client.upscale(images)            # uint8 (N, H, W, 3) or (H, W, 3) → uint8 ×4
        sr = client.upscale_file("photo.png")  # any image file → uint8 (4H, 4W, 3)

Tensors are packed as raw bytes (`tensor_content`), never element by element. Each call has a deadline;
UNAVAILABLE (a server starting or restarting) is retried with exponential back-off; message-size limits
are raised so that large images pass.
"""

import time

import grpc
import numpy as np
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2, model_service_pb2_grpc,
                                     predict_pb2, prediction_service_pb2_grpc)

from core import contract
from serving import tensors
from serving.client_base import ServingClient, ServingClientError

MAX_MESSAGE_BYTES = 1 << 30


class SrganClient(ServingClient):
    def __init__(self, target: str = contract.LOCAL_GRPC, model_name: str = contract.MODEL_NAME,
                 version: int | None = None,
                 version_label: str | None = None, timeout: float = 60.0, retries: int = 4,
                 backoff: float = 0.25):
        super().__init__(target, model_name, version, version_label, timeout, retries, backoff)
        options = [("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                   ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                   # Every address the name resolves to, requests spread over them: with a headless Service
                   # (dns:///srgan-serving-grpc:8500) each request goes to the next pod, not all to the first.
                   ("grpc.lb_policy_name", "round_robin")]
        self.channel = grpc.insecure_channel(target, options=options)
        self.predictions = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.models = model_service_pb2_grpc.ModelServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def _spec(self, spec, signature: str | None = None) -> None:
        spec.name = self.model_name
        if self.version is not None:
            spec.version.value = self.version
        elif self.version_label:
            spec.version_label = self.version_label
        if signature:
            spec.signature_name = signature

    def _call(self, method, request):
        """One RPC with a deadline, retried while the server is UNAVAILABLE; errors as ServingClientError."""
        for attempt in range(self.retries + 1):
            try:
                return method(request, timeout=self.timeout)
            except grpc.RpcError as error:
                if error.code() != grpc.StatusCode.UNAVAILABLE or attempt == self.retries:
                    raise _error(error) from error
                time.sleep(self.backoff * 2 ** attempt)

    def predict(self, inputs: dict, signature: str = contract.SERVING_DEFAULT) -> dict[str, np.ndarray]:
        """Any signature: {input key: array} → {output key: array}."""
        request = predict_pb2.PredictRequest()
        self._spec(request.model_spec, signature)
        for key, value in inputs.items():
            request.inputs[key].CopyFrom(tensors.to_proto(value))
        response = self._call(self.predictions.Predict, request)
        return {key: tensors.to_numpy(proto) for key, proto in response.outputs.items()}

    def metadata(self) -> dict:
        """{signature: {"inputs": {key: dtype}, "outputs": {key: dtype}}} of the served version."""
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        self._spec(request.model_spec)
        response = self._call(self.predictions.GetModelMetadata, request)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signature_map)
        return {name: {"inputs": {k: tensors.dtype_name(v.dtype) for k, v in sig.inputs.items()},
                       "outputs": {k: tensors.dtype_name(v.dtype) for k, v in sig.outputs.items()}}
                for name, sig in signature_map.signature_def.items()}

    def status(self) -> list[dict]:
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = self.model_name
        if self.version is not None:
            request.model_spec.version.value = self.version
        response = self._call(self.models.GetModelStatus, request)
        state_name = get_model_status_pb2.ModelVersionStatus.State.Name
        return [{"version": s.version, "state": state_name(s.state), "error": s.status.error_message}
                for s in response.model_version_status]


def _error(error: grpc.RpcError) -> ServingClientError:
    """Every gRPC error of this client, converted here."""
    return ServingClientError(error.code().name, error.details() or "")
