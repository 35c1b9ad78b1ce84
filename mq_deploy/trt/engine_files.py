"""Engine files on disk: `<engine>` (the plan) and `<engine>.json` (the sidecar: what it was built
from and with), written so that a failed or interrupted build leaves neither half of a pair.
Both are staged as temporary siblings, fsynced, then renamed (sidecar first, plan last; the
sidecar carries the plan's sha256, so a reader can tell the two apart should a crash fall between
the renames)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from ..errors import MQDeployError

PLAN_SUFFIX = ".plan"


def sidecar_path(engine_path) -> Path:
    """model.plan -> model.plan.json"""
    path = Path(engine_path)
    return path.with_name(path.name + ".json")


def decode_engine_path(engine_path) -> Path:
    """model.plan -> model.decode.plan (the single-token step engine)."""
    path = Path(engine_path)
    return path.with_name(f"{path.stem}.decode{path.suffix or PLAN_SUFFIX}")


def check_engine_path(engine_path, inputs=()) -> Path:
    """Fail before any work if the engine cannot be written where asked, or would overwrite an input."""
    path = Path(engine_path)
    if path.is_dir():
        raise MQDeployError(f"--engine {path} is a directory; give a file path such as {path / 'model.plan'}")
    if path.suffix in (".onnx", ".json"):
        raise MQDeployError(f"--engine {path}: an engine file should not end in {path.suffix}; use e.g. "
                            f"{path.with_suffix(PLAN_SUFFIX)}")
    for other in inputs:
        if Path(other).resolve() == path.resolve():
            raise MQDeployError(f"--engine {path} is one of the input files; choose another name")
    parent = next((p for p in [path.parent, *path.parent.parents] if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise MQDeployError(f"--engine {path}: {parent} is a file, not a directory; choose another path")
    if parent is not None and not os.access(parent, os.W_OK | os.X_OK):
        raise MQDeployError(f"--engine {path}: the directory {parent} is not writable; choose another path")
    return path


def _stage(target: Path, data) -> str:
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


def write_engine_files(engine_path, plan: bytes, sidecar: dict) -> tuple[Path, Path]:
    """Write the plan and its sidecar atomically (see the module docstring). The sidecar is
    serialized first, so a sidecar that cannot be written stops the write before any file exists."""
    path = Path(engine_path)
    meta = sidecar_path(path)
    text = (json.dumps(sidecar, indent=2) + "\n").encode("utf-8")
    staged: list[str] = []
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        staged.append(_stage(meta, text))
        staged.append(_stage(path, plan))
        os.replace(staged[0], meta)
        os.replace(staged[1], path)
        staged.clear()
    except OSError as e:
        raise MQDeployError(f"cannot write {path} ({e.strerror or e}); check the path and free disk space") from None
    finally:
        for tmp in staged:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return path, meta


def read_sidecar(engine_path) -> dict | None:
    """The sidecar of an engine, or None when there is none (a plan built elsewhere)."""
    meta = sidecar_path(engine_path)
    if not meta.is_file():
        return None
    try:
        return json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise MQDeployError(f"{meta} is not readable JSON ({e}); rebuild the engine with mq-deploy build") from None
