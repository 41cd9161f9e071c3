"""One loaded model version: its signatures, their input contracts, and how to run them."""

import dataclasses
import io
from pathlib import Path

import numpy as np
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2

from serving.onnx_runtime import create_session


@dataclasses.dataclass(frozen=True)
class InputSpec:
    key: str
    dtype: str  # TensorFlow's name: "uint8", "float", "string"
    rank: int   # -1 for unknown
    channels: int | None  # the last dimension when fixed


def read_signature_defs(version_dir: Path) -> dict[str, meta_graph_pb2.SignatureDef]:
    """The SavedModel's SignatureDefs (what GetModelMetadata answers), read from saved_model.pb."""
    saved = saved_model_pb2.SavedModel.FromString((Path(version_dir) / "saved_model.pb").read_bytes())
    for meta_graph in saved.meta_graphs:
        if "serve" in meta_graph.meta_info_def.tags:
            return {k: v for k, v in meta_graph.signature_def.items() if not k.startswith("__")}
    raise ValueError(f"{version_dir} has no MetaGraph tagged 'serve'")


def input_specs(signature: meta_graph_pb2.SignatureDef) -> dict[str, InputSpec]:
    from serving.tensors import dtype_name
    specs = {}
    for key, info in signature.inputs.items():
        dims = [d.size for d in info.tensor_shape.dim]
        rank = -1 if info.tensor_shape.unknown_rank else len(dims)
        channels = dims[-1] if dims and dims[-1] > 0 else None
        specs[key] = InputSpec(key, dtype_name(info.dtype), rank, channels)
    return specs


class SavedModelRunner:
    """Runs signatures of a SavedModel in this process, as TF Serving does."""

    backend = "savedmodel"

    def __init__(self, version_dir: Path):
        import tensorflow as tf
        self._tf = tf
        self._loaded = tf.saved_model.load(str(version_dir))
        self._signatures = dict(self._loaded.signatures)

    def run(self, signature: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = self._signatures[signature](**{k: self._tf.constant(v) for k, v in inputs.items()})
        return {k: v.numpy() for k, v in outputs.items()}


class OnnxRunner:
    """Runs the same signatures on ONNX Runtime: model.onnx, model_float.onnx, and encoded images decoded
    here and passed through model.onnx."""

    backend = "onnx"

    def __init__(self, version_dir: Path, providers: list[str] | None = None, intra_op_threads: int = 0):
        version_dir = Path(version_dir)
        self._uint8 = create_session(version_dir / "model.onnx", providers, intra_op_threads)
        float_path = version_dir / "model_float.onnx"
        self._float = create_session(float_path, providers, intra_op_threads) if float_path.exists() else None
        self.provider = self._uint8.get_providers()[0]

    def run(self, signature: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if signature == "serving_default":
            return {"sr_images": self._uint8.run(None, {"images": inputs["images"]})[0]}
        if signature == "predict_float" and self._float is not None:
            return {"sr": self._float.run(None, {"lr": inputs["lr"]})[0]}
        if signature == "predict_encoded":
            return {"sr_png": np.array([self._encoded(b) for b in inputs["image_bytes"].ravel()], dtype=object)}
        raise KeyError(signature)

    def _encoded(self, image_bytes: bytes) -> bytes:
        from PIL import Image
        rgb = np.asarray(Image.open(io.BytesIO(image_bytes)).convert("RGB"))
        sr = self._uint8.run(None, {"images": rgb[None]})[0][0]
        buffer = io.BytesIO()
        Image.fromarray(sr).save(buffer, format="PNG")
        return buffer.getvalue()


@dataclasses.dataclass
class Servable:
    """A loaded version: what it answers to and how it runs."""

    name: str
    version: int
    path: Path
    signature_defs: dict
    inputs: dict  # signature name -> {key: InputSpec}
    runner: object

    @classmethod
    def load(cls, name: str, version: int, path: Path, backend: str = "savedmodel") -> "Servable":
        signature_defs = read_signature_defs(path)
        runner = SavedModelRunner(path) if backend == "savedmodel" else OnnxRunner(path)
        return cls(name, version, Path(path), signature_defs,
                   {k: input_specs(v) for k, v in signature_defs.items()}, runner)
