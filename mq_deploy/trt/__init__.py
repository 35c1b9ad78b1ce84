"""TensorRT engine building and running (docs/tensorrt.md). `tensorrt` is imported only where it is
needed, and so are this package's modules: `from mq_deploy.trt import build_engine` loads the
builder on first use, so `doctor` (which reads plugin_library) stays light."""

from importlib import import_module

_EXPORTS = {
    "build_engine": "builder",
    "prepare_build": "build_request",
    "TrtEngineRunner": "runtime",
    "TensorRTSession": "session",
    "load_engine": "runtime",
    "import_tensorrt": "tensorrt_import",
    "build_profiles": "profiles",
    "check_plugin_layers": "plugin_layers",
    "sidecar_path": "engine_files",
    "read_sidecar": "engine_files",
}

__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
