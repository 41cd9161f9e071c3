"""ONNX files through tf2onnx: dynamic N, H, W, checked by the ONNX checker, with metadata."""

from pathlib import Path

import keras
import onnx
import tensorflow as tf
import tf2onnx

from core.cli import UserError
from core.repository import ONNX_FLOAT, ONNX_UINT8
from export import graphs
from export.onnx_passes import fuse_prelu

# Opsets before 13 lack what ONNX Runtime's newer optimisations assume; tf2onnx knows opsets up to its table.
MIN_OPSET = 13
MAX_OPSET = max(tf2onnx.constants.OPSET_TO_IR_VERSION)


def choose_opset(requested: int | None) -> int:
    """The newest opset both tf2onnx and the onnx package know, or the requested one if they can make it."""
    newest = min(MAX_OPSET, onnx.defs.onnx_opset_version())
    if requested is None:
        return newest
    if not MIN_OPSET <= requested <= newest:
        raise UserError(f"opset {requested} cannot be produced by the installed tf2onnx {tf2onnx.__version__} "
                        f"and onnx {onnx.__version__}; choose one from {MIN_OPSET} to {newest}.")
    return requested


def convert(function, spec: tf.TensorSpec, path: Path, opset: int, metadata: dict, prelu_nodes: bool) -> None:
    """Convert a tf.function with one NHWC input of dynamic N, H, W; check the result; write it."""
    model, _ = tf2onnx.convert.from_function(function, input_signature=[spec], opset=opset)
    metadata = {**metadata, "prelu_nodes_fused": fuse_prelu(model) if prelu_nodes else 0}
    model.doc_string = "SRGAN ×{} generator".format(metadata.get("scale", "?"))
    onnx.helper.set_model_props(model, {k: str(v) for k, v in metadata.items()})
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))


def write_onnx_models(generator: keras.Model, directory: Path, opset: int, metadata: dict,
                      prelu_nodes: bool = False) -> dict:
    """model.onnx (the uint8 contract) and model_float.onnx (float32 [-1, 1]); returns their paths.
    `prelu_nodes`: each PReLU as one ONNX PRelu node (export.onnx_passes) instead of tf2onnx's five nodes."""
    paths = {"uint8": directory / ONNX_UINT8, "float": directory / ONNX_FLOAT}
    convert(graphs.uint8_function(graphs.plain(generator)), graphs.UINT8_SPEC, paths["uint8"], opset,
            {**metadata, "input": "uint8 RGB NHWC 0-255", "output": "uint8 RGB NHWC 0-255"}, prelu_nodes)
    convert(graphs.float_function(graphs.plain(generator)), graphs.FLOAT_SPEC, paths["float"], opset,
            {**metadata, "input": "float32 RGB NHWC [-1, 1]", "output": "float32 RGB NHWC [-1, 1]"}, prelu_nodes)
    return paths


def _sort_topologically(graph: onnx.GraphProto) -> None:
    """Order nodes so each comes after the producers of its inputs (the fp16 converter appends its casts)."""
    available = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(i in available for i in n.input)]
        if not ready:
            raise ValueError("the graph has a cycle or an input nobody produces")
        for node in ready:
            ordered.append(node)
            available.update(node.output)
        pending = [n for n in pending if n not in ready]
    graph.ClearField("node")
    graph.node.extend(ordered)


def write_float16_model(uint8_model: Path, path: Path) -> Path:
    """A float16 copy of the uint8 model for GPUs: weights and arithmetic in fp16, uint8 in and out."""
    from onnxruntime.transformers.float16 import convert_float_to_float16
    model = convert_float_to_float16(onnx.load(str(uint8_model)), keep_io_types=True)
    _sort_topologically(model.graph)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path
