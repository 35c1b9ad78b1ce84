"""Engine files on disk: `<engine>` (the plan) and `<engine>.json` (the sidecar: what it was built
from and with), written so that a failed or interrupted build leaves neither half of a pair.
`build` stages every plan and sidecar it makes (prefill and decode) in one `atomic_files` block:
all appear together or none does (sidecar before its plan; the sidecar carries the plan's sha256,
so a reader can tell a stale pair should a crash fall between the renames)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..atomic_dir import StagedFiles, atomic_files
from ..deploy.naming import PLAN_SUFFIX, decode_engine_path, sidecar_path  # noqa: F401 (re-exported)
from ..errors import MQDeployError
from ..outputs import json_kind, read_own_json

# The sidecar keys something reads: engine_files (engine), runtime (plugin_layers), TensorRTSession
# and samples/python/generate.py (engine_set, manifest_path), `build`'s summary (bytes,
# build_seconds, profiles), anyone checking a plan (sha256, graph).
SIDECAR_KEYS = ("engine", "graph", "engine_set", "bytes", "sha256", "build_seconds", "manifest_path",
                "plugin_layers", "profiles")

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


def is_own_engine_file(path: Path) -> bool:
    """A plan whose sidecar says mq-deploy built it under this name, or such a sidecar."""
    path = Path(path)
    if path.name.endswith(".json"):
        return _is_sidecar(read_own_json(path))
    sidecar = read_own_json(sidecar_path(path))
    return _is_sidecar(sidecar) and sidecar.get("engine") == path.name


def _is_sidecar(data: dict | None) -> bool:
    """A sidecar of ours (never a report or manifest of ours that happens to sit at the path)."""
    return data is not None and json_kind(data) == "engine sidecar"


def stage_engine_files(stage: StagedFiles, engine_path, plan: bytes, sidecar: dict) -> None:
    """Stage a plan and its sidecar in an `atomic_files` block: sidecar first (it carries the plan's
    sha256, so a reader can tell a stale pair), plan last. The sidecar is serialized before anything
    is written, so one that cannot be serialized stops the write before any file exists."""
    path = Path(engine_path)
    missing = [key for key in SIDECAR_KEYS if key not in sidecar]
    if missing:
        raise MQDeployError(f"internal error: the sidecar of {path.name} lacks {missing}; please report it")
    text = (json.dumps(sidecar, indent=2) + "\n").encode("utf-8")
    stage.file(sidecar_path(path)).write_bytes(text)
    stage.file(path).write_bytes(plan)


def write_engine_files(engine_path, plan: bytes, sidecar: dict) -> tuple[Path, Path]:
    """Write one plan and its sidecar as a pair (see `mq_deploy.atomic_dir`): a failed or
    interrupted write leaves the previous pair, or nothing, and no temporary file."""
    path = Path(engine_path)
    with atomic_files() as stage:
        stage_engine_files(stage, path, plan, sidecar)
    return path, sidecar_path(path)


def read_sidecar(engine_path) -> dict | None:
    """The sidecar of an engine, or None when there is none (a plan built elsewhere)."""
    meta = sidecar_path(engine_path)
    if not meta.is_file():
        return None
    try:
        return json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise MQDeployError(f"{meta} is not readable JSON ({e}); rebuild the engine with mq-deploy build") from None
