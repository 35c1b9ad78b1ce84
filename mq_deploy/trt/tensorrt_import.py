"""Importing TensorRT lazily, with one clear error when it is missing, and the logger every build
and runtime call shares. Checked against TensorRT's Python bindings 10.x and 11.x (docs/tensorrt.md)."""

from __future__ import annotations

import os
import sys

from ..errors import MQDeployError

INSTALL_HINT = ("TensorRT's Python package is not installed: pip install tensorrt (10.x or 11.x; or "
                "pip install -e '.[trt]') on a machine with an NVIDIA GPU and driver")


def import_tensorrt():
    """The `tensorrt` module, or MQDeployError naming what to install."""
    try:
        import tensorrt
    except ImportError as e:
        # A broken install (libnvinfer missing, CUDA mismatch) also lands here; name the cause.
        detail = "" if isinstance(e, ModuleNotFoundError) and e.name == "tensorrt" else f" ({e})"
        raise MQDeployError(INSTALL_HINT + detail) from None
    return tensorrt


def tensorrt_major(trt) -> int:
    """10 or 11 (or later): strongly typed networks are always on from 11 and its flag is deprecated."""
    return int(str(trt.__version__).split(".")[0])


VERBOSE_ENV = "MQ_TRT_VERBOSE"     # 1: print TensorRT's verbose log (parser and builder decisions)
_shared_logger = None


def shared_logger(trt):
    """One trt.ILogger for the whole process (TensorRT keeps the first logger it is given, so a
    second one would be ignored). It prints warnings and errors to stderr and keeps the errors, so
    a failed build can quote them; call `.errors.clear()` before each build."""
    global _shared_logger
    if _shared_logger is None:
        _shared_logger = _make_logger(trt, verbose=os.environ.get(VERBOSE_ENV) == "1")
    return _shared_logger


def _make_logger(trt, verbose: bool):
    severity = trt.ILogger.Severity
    limit = int(severity.VERBOSE if verbose else severity.WARNING)

    class CollectingLogger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, level, msg):
            if level in (severity.ERROR, severity.INTERNAL_ERROR):
                self.errors.append(msg)
            if int(level) <= limit:
                print(f"[TensorRT] {level.name}: {msg}", file=sys.stderr)

    return CollectingLogger()
