import numpy as np
import onnx
import pytest
import tensorflow as tf

from core.model_spec import ModelSpec
from export.head import fold_kernel, folded_head
from training.model.generator import build_generator


@pytest.mark.parametrize("r, k", [(2, 9), (2, 3), (3, 3), (3, 5), (4, 9)])
def test_a_folded_kernel_before_the_shuffle_equals_the_convolution_after_it(r, k):
    rng = np.random.default_rng(r * 10 + k)
    channels, outputs = 5, 3
    z = rng.normal(size=(2, 7, 6, r * r * channels)).astype(np.float32)
    kernel = rng.normal(size=(k, k, channels, outputs)).astype(np.float32)
    bias = rng.normal(size=outputs).astype(np.float32)
    expected = tf.nn.bias_add(tf.nn.conv2d(tf.nn.depth_to_space(z, r), kernel, 1, "SAME"), bias)
    folded, folded_bias, padding = fold_kernel(kernel, bias, r)
    assert folded.shape[2:] == (r * r * channels, r * r * outputs)
    assert np.count_nonzero(folded) == kernel.size * r * r  # every weight once per sub-pixel, zeros elsewhere
    got = tf.nn.depth_to_space(tf.nn.bias_add(tf.nn.conv2d(z, folded, 1, [[0, 0], *padding, [0, 0]]),
                                              folded_bias), r)
    np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=1e-4)


@pytest.mark.parametrize("scale", [2, 4])
def test_the_folded_head_computes_the_generator(scale):
    generator = build_generator(ModelSpec(channels=8, residual_blocks=1, scale=scale))
    rng = np.random.default_rng(scale)
    for layer in generator.layers:  # non-trivial slopes, so that the repeated PReLU is checked
        if layer.name.endswith("_prelu"):
            layer.alpha.assign(rng.uniform(0.05, 0.5, layer.alpha.shape).astype(np.float32))
    x = rng.uniform(-1, 1, (2, 11, 9, 3)).astype(np.float32)
    np.testing.assert_allclose(folded_head(generator)(tf.constant(x)).numpy(),
                               generator(x, training=False).numpy(), atol=1e-5)


def test_the_exported_graph_ends_with_a_low_resolution_convolution_and_a_shuffle(exported):
    model = onnx.load(str(exported[0] / "model_float.onnx"))
    ops = [node.op_type for node in model.graph.node]
    last_conv = max(i for i, op in enumerate(ops) if op == "Conv")
    assert "DepthToSpace" in ops[last_conv:] and "Tanh" in ops[last_conv:]
    kernel = next(t for t in model.graph.initializer if t.name == model.graph.node[last_conv].input[1])
    assert kernel.dims[0] == 4 * 3  # 2×2 sub-pixels × RGB, shuffled into place afterwards
