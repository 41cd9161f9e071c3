"""Serving the exported model: TF Serving's gRPC API and ONNX Runtime."""

from training.cli import quiet_tensorflow

quiet_tensorflow()  # TensorFlow's start-up lines would drown our output (training.cli)
