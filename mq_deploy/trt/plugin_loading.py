"""Finding and loading libmq_plugins.so for a build or a runtime, with one clear error for each way
it can go wrong. The library registers its creators when loaded (plugins/common/plugin_registration.cpp),
so a dlopen is all TensorRT needs, as with Polygraphy --plugins or trtexec --staticPlugins."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

from ..errors import MQDeployError
from .plugin_library import PLUGIN_ENV, PLUGIN_LIBRARY, find_library

BUILD_HINT = ("build it with `cmake -S . -B build -DTensorRT_ROOT=<TensorRT install dir> && cmake --build build -j` "
              "in the source tree (needs nvcc and TensorRT's headers and libraries; plugins/README.md)")

_loaded: dict[str, ctypes.CDLL] = {}     # resolved path -> handle; kept so the library stays loaded


def _as_library_file(path: Path) -> Path:
    return path / PLUGIN_LIBRARY if path.is_dir() else path


def resolve_plugin_library(explicit=None) -> Path:
    """The plugin library to load: `explicit` (--plugins; a file or its directory) exactly, else
    $MQ_PLUGIN_PATH exactly, else the package's lib/ or the source tree's build/. A path that was
    given but does not exist is an error, never a silent fall-back to another copy."""
    if explicit:
        path = _as_library_file(Path(explicit))
        if not path.is_file():
            raise MQDeployError(f"--plugins {explicit}: {path} does not exist; give the path of {PLUGIN_LIBRARY} "
                                f"(or the directory holding it), or {BUILD_HINT}")
        return path
    env = os.environ.get(PLUGIN_ENV)
    if env:
        path = _as_library_file(Path(env))
        if not path.is_file():
            raise MQDeployError(f"{PLUGIN_ENV}={env}: {path} does not exist; point it at {PLUGIN_LIBRARY} "
                                f"(or its directory), or unset it")
        return path
    found = find_library(PLUGIN_LIBRARY)
    if found is None:
        raise MQDeployError(f"{PLUGIN_LIBRARY} (the mq_deploy TensorRT plugins: SelectiveScan, SSDScan, "
                            "HadamardTransform, HadamardQuantize) was not found: "
                            f"pass --plugins PATH or set {PLUGIN_ENV}=PATH, or {BUILD_HINT}")
    return found


def load_plugin_library(trt, path, required=()) -> Path:
    """dlopen the library (RTLD_GLOBAL, once per process) and check that every (name, version,
    namespace) in `required` now has a registered creator. TensorRT's own plugin library is not
    initialized: the graphs need none of its plugins (see parser_input.py for what it would break)."""
    path = Path(path).resolve()
    key = str(path)
    if key not in _loaded:
        try:
            _loaded[key] = ctypes.CDLL(key, mode=ctypes.RTLD_GLOBAL)
        except OSError as e:
            raise MQDeployError(f"cannot load {path} ({e}); rebuild it against the installed TensorRT "
                                f"{trt.__version__}: {BUILD_HINT}") from None
    registry = trt.get_plugin_registry()
    missing = [f"{name} version {version} namespace {namespace!r}" for name, version, namespace in required
               if registry.get_creator(name, version, namespace) is None]
    if missing:
        raise MQDeployError(f"{path} was loaded but registers no creator for {', '.join(missing)}: it is another "
                            f"library or was built from other sources; rebuild it from this tree ({BUILD_HINT})")
    return path
