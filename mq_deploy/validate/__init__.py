"""Validation: an engine (or ONNX Runtime on the graph) against references on the same inputs,
pass/fail with stated tolerances (`validation`), and the inputs it runs on (`inputs`)."""
