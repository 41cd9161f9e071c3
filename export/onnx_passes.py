"""Graph passes on the ONNX files after tf2onnx, each checked by the export's parity measurement.

`fuse_prelu`: tf2onnx writes Keras' PReLU as it computes it, relu(x) + (-alpha)·relu(-x): five nodes
(Relu, Neg, Relu, Mul, Add) per activation, and ONNX Runtime then wraps the convolutions around them in layout
reorders. ONNX has the operator itself: PRelu(x, alpha) is x where x ≥ 0 and alpha·x elsewhere, the same
function, in one node that ONNX Runtime fuses with the convolution before it.
"""

import numpy as np
import onnx
from onnx import numpy_helper


def fuse_prelu(model: onnx.ModelProto) -> int:
    """Replace every Add(Relu(x), Mul(Relu(Neg(x)), c)) whose c is a constant by PRelu(x, -c), in place;
    returns how many were fused. A pattern whose intermediate values are used elsewhere is left alone."""
    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            consumers[name] = consumers.get(name, 0) + 1
    outputs = {o.name for o in graph.output}
    constants = {t.name: t for t in graph.initializer}

    def only_feeds_one(name: str) -> bool:
        return consumers.get(name, 0) == 1 and name not in outputs

    def made_by(name: str, op: str):
        node = producer.get(name)
        return node if node is not None and node.op_type == op else None

    replaced, fused = {}, 0  # id(Add node) -> PRelu node; nodes to drop
    dropped = set()
    for add in graph.node:
        if add.op_type != "Add" or len(add.input) != 2:
            continue
        for relu_name, mul_name in (add.input, add.input[::-1]):
            relu, mul = made_by(relu_name, "Relu"), made_by(mul_name, "Mul")
            if relu is None or mul is None or not (only_feeds_one(relu_name) and only_feeds_one(mul_name)):
                continue
            slope_name = next((i for i in mul.input if i in constants), None)
            negative = next((i for i in mul.input if i != slope_name), None)
            relu_neg = made_by(negative, "Relu") if negative else None
            neg = made_by(relu_neg.input[0], "Neg") if relu_neg is not None else None
            if (slope_name is None or neg is None or neg.input[0] != relu.input[0]
                    or not (only_feeds_one(negative) and only_feeds_one(relu_neg.input[0]))):
                continue
            slope = -numpy_helper.to_array(constants[slope_name]).astype(np.float32)
            slope_tensor = numpy_helper.from_array(slope, f"{add.name or add.output[0]}/prelu_slope")
            graph.initializer.append(slope_tensor)
            replaced[id(add)] = onnx.helper.make_node("PRelu", [relu.input[0], slope_tensor.name], list(add.output),
                                                      name=f"{add.name or add.output[0]}/PRelu")
            dropped.update(id(n) for n in (relu, mul, relu_neg, neg))
            fused += 1
            break
    if not fused:
        return 0
    nodes = [replaced.get(id(n), n) for n in graph.node if id(n) not in dropped]
    graph.ClearField("node")
    graph.node.extend(nodes)
    used = {name for node in graph.node for name in node.input}
    kept = [t for t in graph.initializer if t.name in used]
    graph.ClearField("initializer")
    graph.initializer.extend(kept)
    return fused
