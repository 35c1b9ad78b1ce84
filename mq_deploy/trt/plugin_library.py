"""Finding the compiled libraries: libmq_plugins.so (TensorRT plugins) and libmq_kernels.so (CUDA
kernels alone). Pure path logic, no TensorRT import, so `doctor` can report on a machine without it."""

from __future__ import annotations

import os
from pathlib import Path

PLUGIN_ENV = "MQ_PLUGIN_PATH"
PLUGIN_LIBRARY = "libmq_plugins.so"
KERNEL_LIBRARY = "libmq_kernels.so"


def _search_dirs() -> list[Path]:
    root = Path(__file__).resolve().parents[2]
    return [Path(__file__).resolve().parents[1] / "lib", root / "build", root / "build" / "plugins"]


def find_library(name: str, explicit: str | os.PathLike | None = None) -> Path | None:
    """The first existing candidate: an explicit path, then $MQ_PLUGIN_PATH (a file or a directory;
    for the plugin library only), then the package's lib/ and the source tree's build/ directories."""
    candidates = []
    if explicit:
        candidates.append(Path(explicit))
    env = os.environ.get(PLUGIN_ENV)
    if env and name == PLUGIN_LIBRARY:
        candidates.append(Path(env))
    candidates += [d / name for d in _search_dirs()]
    for path in candidates:
        if path.is_dir():
            path = path / name
        if path.is_file():
            return path
    return None
