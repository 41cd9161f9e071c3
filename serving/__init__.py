"""Serving the exported model: TF Serving's gRPC API and ONNX Runtime."""
