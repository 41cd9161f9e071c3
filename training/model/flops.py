"""Counting the arithmetic of a network: what "how close to the hardware's limit" is measured against."""

import numpy as np
import keras


def forward_flops(model: keras.Model, height: int, width: int) -> int:
    """FLOPs (2 × multiply-adds) of one image through the Conv2D and Dense layers of a functional model.

    Element-wise work (activations, adds, pixel shuffle) is left out: it is a rounding error beside the
    convolutions and costs memory traffic rather than arithmetic.
    """
    layers = [layer for layer in model.layers if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))]
    probe = keras.Model(model.input, [layer.output for layer in layers])
    outputs = probe(np.zeros((1, height, width, model.inputs[0].shape[-1]), np.float32))
    if not isinstance(outputs, (list, tuple)):
        outputs = [outputs]
    total = 0
    for layer, output in zip(layers, outputs):
        positions = int(np.prod(output.shape[1:-1]))  # output pixels (or 1 for a flattened Dense)
        total += 2 * positions * int(np.prod(layer.kernel.shape))
    return total
