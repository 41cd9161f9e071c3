"""Export of the trained generator to a SavedModel for TF Serving and to ONNX, with measured parity."""
