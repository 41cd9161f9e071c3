"""Export of the trained generator to a SavedModel for TF Serving and to ONNX, with measured parity."""

from training.cli import quiet_tensorflow

quiet_tensorflow()  # TensorFlow's start-up lines would drown our output (training.cli)
