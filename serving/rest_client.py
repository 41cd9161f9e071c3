"""A client for TF Serving's REST API (the real server's port 8501, or serving.server --rest_api_port).

    with SrganRestClient("127.0.0.1:8501") as client:
        sr = client.upscale(images)            # uint8 (N, H, W, 3) or (H, W, 3) → uint8 ×4
        sr = client.upscale_file("photo.png")  # any image file → uint8 (4H, 4W, 3)

The same methods as `serving.client.SrganClient` (gRPC). Tensors travel as JSON nested lists in the columnar
format (`inputs` / `outputs`), binary strings as `{"b64": …}`; one keep-alive HTTP session (requests); each call
has a timeout, and a refused connection or 503 (a server starting) is retried with exponential back-off.
"""

import base64
import time

import numpy as np
import requests

from core import contract
from serving import rest_json
from serving.client_base import ServingClient, ServingClientError


class SrganRestClient(ServingClient):
    def __init__(self, target: str = contract.LOCAL_REST, model_name: str = contract.MODEL_NAME,
                 version: int | None = None,
                 version_label: str | None = None, timeout: float = 60.0, retries: int = 4,
                 backoff: float = 0.25):
        super().__init__(target, model_name, version, version_label, timeout, retries, backoff)
        self.base = target if target.startswith(("http://", "https://")) else f"http://{target}"
        self.session = requests.Session()
        self._signatures = {}  # from the metadata, read once: output names and dtypes

    def close(self) -> None:
        self.session.close()

    def _model_url(self) -> str:
        url = f"{self.base}/v1/models/{self.model_name}"
        if self.version is not None:
            url += f"/versions/{self.version}"
        elif self.version_label:
            url += f"/labels/{self.version_label}"
        return url

    def _call(self, method: str, url: str, body: dict | None = None) -> bytes:
        """One request with a timeout, retried while the server is unreachable or answers 503; the answer's JSON,
        errors as ServingClientError."""
        for attempt in range(self.retries + 1):
            try:
                response = self.session.request(method, url, timeout=self.timeout,
                                                data=None if body is None else rest_json.dumps(body),
                                                headers=None if body is None else _JSON_BODY)
            except requests.ConnectionError as error:
                if attempt == self.retries:
                    raise _error(error) from error
            except requests.RequestException as error:
                raise _error(error) from error
            else:
                if response.status_code == 200:
                    return response.content
                if response.status_code != 503 or attempt == self.retries:
                    raise _error(response)
            time.sleep(self.backoff * 2 ** attempt)
        raise AssertionError("unreachable")

    def predict(self, inputs: dict, signature: str = contract.SERVING_DEFAULT) -> dict[str, np.ndarray]:
        """Any signature: {input key: array} → {output key: array}, in the signature's dtypes (outputs named
        *_bytes come back as bytes)."""
        dtypes = self._output_dtypes(signature)  # first (then cached): the predict is the last call made
        body = {"signature_name": signature, "inputs": {k: _to_json(np.asarray(v)) for k, v in inputs.items()}}
        answer = self._call("POST", self._model_url() + ":predict", body)
        if len(dtypes) == 1:  # an image: its numbers straight into numpy
            array = rest_json.outputs_array(answer, _NUMPY.get(next(iter(dtypes.values())), object))
            if array is not None:
                return {next(iter(dtypes)): array}
        with rest_json.collector_paused():
            outputs = rest_json.loads(answer)["outputs"]
            if not isinstance(outputs, dict) or _is_b64(outputs):
                outputs = {next(iter(dtypes)): outputs}  # one output: TF Serving sends its value without a name
            arrays = {k: _from_json(v, dtypes.get(k)) for k, v in outputs.items()}
            del outputs  # the answer's lists, freed before the collector is back
        return arrays

    def _output_dtypes(self, signature: str) -> dict:
        if signature not in self._signatures:
            self._signatures.update(self.metadata())
        return self._signatures[signature]["outputs"]

    def status(self) -> list[dict]:
        answer = rest_json.loads(self._call("GET", self._model_url()))
        return [{"version": int(s["version"]), "state": s["state"], "error": s["status"].get("error_message", "")}
                for s in answer["model_version_status"]]

    def metadata(self) -> dict:
        answer = rest_json.loads(self._call("GET", self._model_url() + "/metadata"))
        signatures = answer["metadata"]["signature_def"]["signature_def"]
        dtype = lambda info: info.get("dtype", "DT_INVALID").removeprefix("DT_").lower()  # noqa: E731
        return {name: {"inputs": {k: dtype(v) for k, v in sig.get("inputs", {}).items()},
                       "outputs": {k: dtype(v) for k, v in sig.get("outputs", {}).items()}}
                for name, sig in signatures.items()}


def _error(failure) -> ServingClientError:
    """Every error of this client, converted here: an answer of TF Serving's `{"error": …}` (its status read back
    from the HTTP code), a connection that failed (UNAVAILABLE) or timed out (DEADLINE_EXCEEDED)."""
    if isinstance(failure, requests.Response):
        try:
            message = failure.json().get("error", failure.text)
        except ValueError:
            message = failure.text
        return ServingClientError(contract.STATUS_OF_HTTP.get(failure.status_code, "UNKNOWN"), message,
                                  failure.status_code)
    code = "DEADLINE_EXCEEDED" if isinstance(failure, requests.Timeout) else "UNAVAILABLE"
    return ServingClientError(code, str(failure))


RestError = ServingClientError  # its name before the clients shared one error type
_JSON_BODY = {"Content-Type": "application/json"}


def _to_json(array: np.ndarray):
    if array.dtype == object or array.dtype.kind in "SU":
        return np.vectorize(lambda b: {"b64": base64.b64encode(b if isinstance(b, bytes) else str(b).encode())
                                       .decode()}, otypes=[object])(array).tolist()
    return rest_json.tensor(array)


_NUMPY = {"uint8": np.uint8, "float": np.float32, "double": np.float64, "int32": np.int32, "int64": np.int64}


def _is_b64(value) -> bool:
    return isinstance(value, dict) and list(value) == ["b64"]


def _from_json(value, dtype: str | None):
    if dtype == "string":
        decode = lambda v: base64.b64decode(v["b64"]) if _is_b64(v) else v.encode()  # noqa: E731
        if not isinstance(value, list):
            return decode(value)
        return np.array([_from_json(v, dtype) if isinstance(v, list) else decode(v) for v in value], dtype=object)
    return np.asarray(value, dtype=_NUMPY.get(dtype))
