"""Atomic file writes: a temporary sibling, fsync, rename. A failed export leaves no partial file."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from ..errors import MQDeployError


def check_writable(path: Path) -> None:
    """Fail before any work if the output cannot be written."""
    if path.exists() and path.is_dir():
        raise MQDeployError(f"{path} is a directory; give a file path such as {path / 'model.onnx'}")
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise MQDeployError(f"cannot create the output directory {parent} ({e.strerror}); choose a writable path") from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise MQDeployError(f"the output directory {parent} is not writable; choose another path")


def write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = None, None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            fd = None
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        raise MQDeployError(f"cannot write {path} ({e.strerror}); check the path and free disk space") from None
    finally:
        if fd is not None:
            os.close(fd)
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def file_sha256(path) -> str:
    """sha256 of a file, read in blocks (graphs' external data and plans can be gigabytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
