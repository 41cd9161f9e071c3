"""Serving the exported model: TF Serving's gRPC API and ONNX Runtime."""

import core  # noqa: F401  (first: TensorFlow's start-up lines kept off the terminal, core.cli)
