"""ONNX export (DESIGN.md §3): a TensorRT-ready graph with QDQ linears and SelectiveScan nodes that
ONNX Runtime also runs (through the nodes' local functions). `export_onnx` is the entry point;
`check_onnx` the graph check that every export ends with."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import MQDeployError
from .check import Problem, check_model, check_onnx
from .files import check_writable, write_atomic
from .graph_files import commit, discard, serialize_graph
from .graph_builder import build_graph
from .manifest import build_manifest, decode_path, manifest_bytes, manifest_path, read_manifest
from .source import load_export_source

__all__ = ["export_onnx", "ExportResult", "check_onnx", "check_model", "Problem", "manifest_path", "decode_path",
           "read_manifest"]

PRECISIONS = ("fp16", "fp32")
SCANS = ("plugin", "onnx")


@dataclass
class ExportResult:
    onnx_path: Path
    decode_path: Path | None
    manifest_path: Path
    seconds: float
    bytes: dict[str, int] = field(default_factory=dict)      # graph kind -> file size
    manifest: dict = field(default_factory=dict)


def export_onnx(model_dir, onnx_path, precision: str = "fp16", scan: str = "plugin", decode: bool = True,
                batch_max: int | None = None, seq_max: int | None = None,
                external_data: bool | None = None) -> ExportResult:
    """Export an FP checkpoint or a deploy-mode quantized artifact to `onnx_path` (+ the decode graph
    `<stem>.decode.onnx` and manifest.json beside it). The graphs are checked before anything is
    written; files are written atomically. external_data: None = weights go to `<file>.data` only
    for graphs past protobuf's 2 GB limit; True = always; False = never (an error past 2 GB)."""
    if precision not in PRECISIONS:
        raise MQDeployError(f"unknown precision {precision!r}: choose fp16 or fp32")
    if scan not in SCANS:
        raise MQDeployError(f"unknown scan form {scan!r}: choose plugin (TensorRT plugin + local function) or onnx")
    for label, value in (("batch_max", batch_max), ("seq_max", seq_max)):
        if value is not None and value < 1:
            raise MQDeployError(f"{label} must be a positive integer, got {value}")
    onnx_path = Path(onnx_path)
    if onnx_path.suffix != ".onnx":
        raise MQDeployError(f"{onnx_path}: the output file name must end in .onnx")
    check_writable(onnx_path)
    start = time.perf_counter()
    source = load_export_source(model_dir)
    kinds = {"prefill": onnx_path, **({"decode": decode_path(onnx_path)} if decode else {})}
    graphs, files = {}, []
    try:
        for kind, path in kinds.items():
            try:
                built = build_graph(source, precision, scan, decode=kind == "decode")
            except ValueError as e:
                raise MQDeployError(f"cannot export {model_dir}: {e}") from None
            files.append(serialize_graph(built.model, path, kind, external_data))
            graphs[kind] = (path, built, files[-1])
    except BaseException:
        discard(files)
        raise
    seconds = time.perf_counter() - start
    manifest = build_manifest(source, precision, scan, graphs, seconds, batch_max, seq_max)
    commit(files)
    write_atomic(manifest_path(onnx_path), manifest_bytes(manifest))
    return ExportResult(onnx_path, kinds.get("decode"), manifest_path(onnx_path), seconds,
                        {k: len(g[2].data) + g[2].external_bytes for k, g in graphs.items()}, manifest)
