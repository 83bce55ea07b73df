"""Exporting bundles to other runtimes (ONNX for ONNX Runtime on CPU)."""
