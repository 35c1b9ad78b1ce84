"""An export set on disk: the prefill graph, its decode graph, their external data files and
manifest.json, side by side. File naming, reading the manifest, telling a complete set from a
partial one, and telling our files from a user's. No onnx import: trt/ and doctor read this."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import MQDeployError
from ..outputs import read_own_json
from .files import file_sha256

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1


def manifest_path(onnx_path) -> Path:
    return Path(onnx_path).with_name(MANIFEST_NAME)


def decode_path(onnx_path) -> Path:
    """model.onnx -> model.decode.onnx (the single-token step graph)."""
    path = Path(onnx_path)
    return path.with_name(f"{path.stem}.decode{path.suffix or '.onnx'}")


def external_data_path(graph_path) -> Path:
    """model.onnx -> model.onnx.data (its large initializers, when stored outside the graph)."""
    path = Path(graph_path)
    return path.with_name(f"{path.name}.data")


def candidate_files(onnx_path, decode: bool = True) -> list[Path]:
    """Every file an export to `onnx_path` may write, in commit order (manifest last)."""
    graphs = [Path(onnx_path)] + ([decode_path(onnx_path)] if decode else [])
    return [f for g in graphs for f in (external_data_path(g), g)] + [manifest_path(onnx_path)]


def read_manifest(onnx_path) -> dict:
    return json.loads(manifest_path(onnx_path).read_text(encoding="utf-8"))


def require_manifest(onnx_path) -> dict:
    """The manifest of an exported graph, or one clear error when the graph or its manifest is missing."""
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise MQDeployError(f"{onnx_path} does not exist; export it first with `mq-deploy export`")
    if not manifest_path(onnx_path).is_file():
        raise MQDeployError(f"no manifest.json beside {onnx_path}; it holds the model, precision and graph I/O: "
                            "re-export with `mq-deploy export`")
    try:
        manifest = read_manifest(onnx_path)
    except (ValueError, OSError) as e:
        raise MQDeployError(f"cannot read {manifest_path(onnx_path)} ({e}); re-export with `mq-deploy export`") from None
    if not isinstance(manifest, dict) or manifest.get("manifest_version") != MANIFEST_VERSION \
            or not isinstance(manifest.get("graphs"), dict):
        raise MQDeployError(f"{manifest_path(onnx_path)} is not a version-{MANIFEST_VERSION} mq-deploy manifest; "
                            "re-export with this version's `mq-deploy export`")
    return manifest


def _set_files(directory: Path, manifest: dict) -> dict[Path, str | None]:
    """{file of the set: its recorded sha256} for every graph and external data file."""
    files = {}
    for entry in manifest["graphs"].values():
        files[directory / entry["file"]] = entry.get("sha256")
        data = entry.get("external_data")
        if data:
            files[directory / data["file"]] = data.get("sha256")
    return files


def verify_export_set(onnx_path) -> dict:
    """The manifest of a complete export set, or one error naming what is missing: a graph without
    its manifest, a manifest that does not list the graph, a listed graph or data file that is not
    there (an interrupted or partial copy). Whether the files are the ones export wrote is
    `modified_files`' question."""
    onnx_path = Path(onnx_path)
    manifest = require_manifest(onnx_path)
    if not any(isinstance(e, dict) and e.get("file") == onnx_path.name for e in manifest["graphs"].values()):
        listed = ", ".join(str(e.get("file", "?")) for e in manifest["graphs"].values() if isinstance(e, dict))
        raise MQDeployError(f"{manifest_path(onnx_path)} describes {listed}, not {onnx_path.name}: {onnx_path.name} "
                            "is not part of that export set; keep the file names export wrote, or re-export")
    for path in _set_files(onnx_path.parent, manifest):
        if not path.is_file():
            raise MQDeployError(f"incomplete export set: {path.name}, listed in {MANIFEST_NAME} beside {onnx_path}, "
                                "is missing; re-export with `mq-deploy export`")
    return manifest


def modified_files(onnx_path, manifest: dict) -> list[str]:
    """Names of the set's files that differ from what export recorded (sha256): edited since, or
    left from an interrupted write beside an older manifest."""
    return [p.name for p, sha in _set_files(Path(onnx_path).parent, manifest).items()
            if sha and p.is_file() and file_sha256(p) != sha]


def previous_export(onnx_path) -> tuple[str | None, set[Path]]:
    """(prefill file name, files) of the mq-deploy export set whose manifest sits beside `onnx_path`,
    or (None, empty) when there is none (no manifest, or one mq-deploy did not write)."""
    manifest = read_own_json(manifest_path(onnx_path))
    if manifest is None or not isinstance(manifest.get("graphs"), dict):
        return None, set()
    directory = Path(onnx_path).parent
    try:
        files = set(_set_files(directory, manifest)) | {manifest_path(onnx_path)}
        prefill = manifest["graphs"].get("prefill", next(iter(manifest["graphs"].values())))["file"]
    except (KeyError, TypeError, AttributeError, StopIteration):
        return None, set()
    return prefill, files
