"""FLOPs of one image through an ONNX model, from its Conv and MatMul/Gemm nodes after shape inference.

A convolution counts only its non-zero weights: the exported head (`export.head`) runs a kernel whose taps
outside each sub-pixel's 9×9 window are zeros, and those are not the model's arithmetic.
"""

import numpy as np
import onnx
from onnx import numpy_helper, shape_inference


def _dims(value_info) -> list[int]:
    return [d.dim_value for d in value_info.type.tensor_type.shape.dim]


def model_flops(path, height: int, width: int) -> int:
    """2 × multiply-adds of Conv, ConvTranspose-free graphs (ours) for one H×W image."""
    model = onnx.load(str(path))
    for dim, value in zip(model.graph.input[0].type.tensor_type.shape.dim, (1, height, width, 3)):
        dim.ClearField("dim_param")
        dim.dim_value = value
    inferred = shape_inference.infer_shapes(model)
    shapes = {v.name: _dims(v) for v in [*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input]}
    weights = {t.name: list(t.dims) for t in inferred.graph.initializer}
    nonzero = {t.name: int(np.count_nonzero(numpy_helper.to_array(t))) for t in inferred.graph.initializer}
    total = 0
    for node in inferred.graph.node:
        if node.op_type == "Conv":
            n, _, h, w = shapes[node.output[0]]  # N, C_out, H, W; each weight is used once per output pixel
            total += 2 * n * h * w * nonzero[node.input[1]]
        elif node.op_type in ("MatMul", "Gemm") and node.input[1] in weights:
            out = shapes[node.output[0]]
            total += 2 * int(np.prod(out)) * weights[node.input[1]][0]
    return total
