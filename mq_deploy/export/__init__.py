"""ONNX export (docs/export.md): a TensorRT-ready graph with QDQ linears and SelectiveScan nodes that
ONNX Runtime also runs (through the nodes' local functions). `export_onnx` is the entry point;
`check_onnx` the graph check that every export ends with.

Names are loaded on first use: importing this package does not import onnx. What readers of an
export need (the manifest, file names, the op contract) lives in mq_deploy.deploy."""

from importlib import import_module

_EXPORTS = {
    "export_onnx": "exporter",
    "ExportResult": "exporter",
    "check_onnx": "check",
    "check_model": "check",
    "Problem": "check",
}

__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
