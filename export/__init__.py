"""Export of the trained generator to a SavedModel for TF Serving and to ONNX, with measured parity."""

import core  # noqa: F401  (first: TensorFlow's start-up lines kept off the terminal, core.cli)
