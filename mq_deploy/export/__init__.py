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
from .graph_builder import build_graph
from .manifest import build_manifest, decode_path, manifest_bytes, manifest_path, read_manifest
from .source import load_export_source

__all__ = ["export_onnx", "ExportResult", "check_onnx", "check_model", "Problem", "manifest_path", "decode_path",
           "read_manifest"]

PRECISIONS = ("fp16", "fp32")
SCANS = ("plugin", "onnx")
MAX_PROTO_BYTES = 2_000_000_000     # protobuf's 2 GiB limit, with a margin


@dataclass
class ExportResult:
    onnx_path: Path
    decode_path: Path | None
    manifest_path: Path
    seconds: float
    bytes: dict[str, int] = field(default_factory=dict)      # graph kind -> file size
    manifest: dict = field(default_factory=dict)


def _serialize(model, kind: str) -> bytes:
    size = model.ByteSize()
    if size > MAX_PROTO_BYTES:
        raise MQDeployError(f"the {kind} graph is {size / 1e9:.1f} GB, over ONNX's 2 GB single-file limit; "
                            "export with --precision fp16 or quantize the model first (external data is not supported yet)")
    return model.SerializeToString()


def export_onnx(model_dir, onnx_path, precision: str = "fp16", scan: str = "plugin", decode: bool = True,
                batch_max: int | None = None, seq_max: int | None = None) -> ExportResult:
    """Export an FP checkpoint or a deploy-mode quantized artifact to `onnx_path` (+ the decode graph
    `<stem>.decode.onnx` and manifest.json beside it). The graphs are checked before anything is
    written; files are written atomically."""
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
    graphs = {}
    for kind, path in kinds.items():
        try:
            built = build_graph(source, precision, scan, decode=kind == "decode")
        except ValueError as e:
            raise MQDeployError(f"cannot export {model_dir}: {e}") from None
        problems = check_model(built.model)
        if problems:
            raise MQDeployError(f"the exported {kind} graph fails its check (nothing was written):\n  "
                                + "\n  ".join(map(str, problems)))
        graphs[kind] = (path, built, _serialize(built.model, kind))
    seconds = time.perf_counter() - start
    manifest = build_manifest(source, precision, scan, graphs, seconds, batch_max, seq_max)
    for path, _, data in graphs.values():
        write_atomic(path, data)
    write_atomic(manifest_path(onnx_path), manifest_bytes(manifest))
    return ExportResult(onnx_path, kinds.get("decode"), manifest_path(onnx_path), seconds,
                        {k: len(g[2]) for k, g in graphs.items()}, manifest)
