"""manifest.json beside the ONNX: everything `build`, `validate` and the samples need without
re-reading the checkpoint (model config, recipe, graph I/O, plugins, opsets, source hash)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .. import __version__
from ..errors import MQDeployError
from .graph_builder import BuiltGraph
from .graph_files import GraphFile
from .hadamard_node import OP_TYPE as HADAMARD_OP
from .onnx_builder import DOMAIN, DOMAIN_VERSION
from .selective_scan_node import OP_TYPE as SCAN_OP
from .selective_scan_node import PLUGIN_NAMESPACE, PLUGIN_VERSION
from .source import ExportSource

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1
SCAN_DEVIATION = ("the scan runs in the graph's float type with an FP32 state; the paper's per-token "
                  "quantization of h·C is not deployed (not expressible in a fused scan kernel)")


def manifest_path(onnx_path) -> Path:
    return Path(onnx_path).with_name(MANIFEST_NAME)


def decode_path(onnx_path) -> Path:
    """model.onnx -> model.decode.onnx (the single-token step graph)."""
    path = Path(onnx_path)
    return path.with_name(f"{path.stem}.decode{path.suffix or '.onnx'}")


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
        return read_manifest(onnx_path)
    except (ValueError, OSError) as e:
        raise MQDeployError(f"cannot read {manifest_path(onnx_path)} ({e}); re-export with `mq-deploy export`") from None


def _graph_entry(path: Path, built: BuiltGraph, graph_file: GraphFile) -> dict:
    ops = {n.op_type for n in built.model.graph.node}
    data = graph_file.data
    return {"file": path.name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
            **graph_file.manifest_entry(),
            "inputs": [io.as_dict() for io in built.inputs], "outputs": [io.as_dict() for io in built.outputs],
            "plugins": sorted(op for op in ops if op in (SCAN_OP, HADAMARD_OP)),
            "linear_forms": _form_counts(built.linear_forms), "linears": built.linear_forms}


def _form_counts(forms: dict[str, str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for form in forms.values():
        counts[form] = counts.get(form, 0) + 1
    return dict(sorted(counts.items()))


def build_manifest(source: ExportSource, precision: str, scan: str, graphs: dict[str, tuple[Path, BuiltGraph, GraphFile]],
                   seconds: float, batch_max: int | None, seq_max: int | None) -> dict:
    entries = {kind: _graph_entry(*g) for kind, g in graphs.items()}
    first = next(iter(graphs.values()))[1].model         # every graph of an export has the same opset
    opset = next(i.version for i in first.opset_import if i.domain in ("", "ai.onnx"))
    ir_version = first.ir_version
    used = sorted({p for e in entries.values() for p in e["plugins"]})
    quant = None
    if source.recipe is not None:
        quant = {"recipe": source.recipe, "config": source.quant_config.to_dict(),
                 "quantized_linears": sorted(source.weight_specs),
                 "activation_scales": source.activation_scales,
                 "online_transforms": {p: "hadamard" for p in sorted(source.hadamard_signs)},
                 "gate_scale_layers": [i for i, layer in enumerate(source.model.backbone.layers)
                                       if layer.mixer.gate_scale is not None],
                 "deviation_from_paper": SCAN_DEVIATION}
    return {
        "manifest_version": MANIFEST_VERSION, "producer": f"mq-deploy {__version__}",
        "source": {"path": str(source.path), "sha256": source.sha256,
                   "kind": "quantized artifact" if source.recipe else "FP checkpoint"},
        "model": source.config.to_hf_dict(), "quantization": quant,
        "precision": precision, "scan": scan,
        "opset": {"ai.onnx": opset, **({DOMAIN: DOMAIN_VERSION} if used else {})}, "ir_version": ir_version,
        "plugins": [{"name": p, "version": PLUGIN_VERSION, "namespace": PLUGIN_NAMESPACE, "domain": DOMAIN}
                    for p in used],
        "graphs": entries,
        "state": {"conv": "conv_state[.out].<layer> [batch, d_inner, conv_kernel-1], graph float type",
                  "ssm": "ssm_state[.out].<layer> [batch, d_inner, state_size], float32",
                  "carry": "feed prefill's *_out.<layer> outputs to the decode graph's inputs of the same name without _out"},
        "profile": {"batch_max": batch_max, "seq_max": seq_max},
        "export_seconds": round(seconds, 3),
    }


def manifest_bytes(manifest: dict) -> bytes:
    return (json.dumps(manifest, indent=2) + "\n").encode("utf-8")
