"""manifest.json beside the ONNX: everything `build`, `validate` and the samples need without
re-reading the checkpoint (model config, recipe, graph I/O, plugins, opsets, source hash)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .. import __version__
from ..deploy.manifest import MANIFEST_VERSION, relative_source
from .graph_builder import BuiltGraph
from .graph_files import GraphFile
from ..deploy.contract import (DOMAIN, DOMAIN_VERSION, HADAMARD_QUANTIZE_OP, PLUGIN_NAMESPACE, PLUGIN_OPS,
                               PLUGIN_VERSION)
from .source import ExportSource
from ..data.images import Preprocessing
from ..models.vim import VimConfig

SCAN_DEVIATION = ("the scan runs in the graph's float type with an FP32 state; the paper's per-token "
                  "quantization of h·C is not deployed (not expressible in a fused scan kernel)")


CARRY_NOTE = "feed prefill's *_out.<layer> outputs to the decode graph's inputs of the same name without _out"
STATE_NOTE = {"conv": "conv_state[.out].<layer> [batch, d_inner, conv_kernel-1], graph float type",
              "ssm": "ssm_state[.out].<layer> [batch, d_inner, state_size], float32", "carry": CARRY_NOTE}
MAMBA2_STATE_NOTE = {"conv": "conv_state[.out].<layer> [batch, conv_dim (x, B and C), conv_kernel-1], graph float type",
                     "ssm": "ssm_state[.out].<layer> [batch, num_heads, head_dim, state_size], float32",
                     "carry": CARRY_NOTE}


def is_vision(config) -> bool:
    return isinstance(config, VimConfig)


def state_note(config) -> dict:
    from ..models.mamba2 import Mamba2Config
    return MAMBA2_STATE_NOTE if isinstance(config, Mamba2Config) else STATE_NOTE


def preprocessing_entry(config) -> dict | None:
    """How an app turns an image file into the `images` input (data/images.Preprocessing): what
    `mq-deploy eval/validate` do with image folders; None for a language model or a model that does
    not read RGB images."""
    if not is_vision(config) or config.in_channels != 3:
        return None
    return Preprocessing.for_size(config.img_size).to_dict()


def model_entry(config) -> dict:
    """The model's config as the manifest records it: a language model's in the HF layout, a Vision
    Mamba's with model_type "vim"."""
    return config.to_dict() if is_vision(config) else config.to_hf_dict()


def _plugin_nodes(built: BuiltGraph) -> list[dict]:
    """Every plugin node with the attributes TensorRT looks it up by, so `build` can check the
    plugin layers from the manifest without onnx installed."""
    nodes = []
    for n in built.model.graph.node:
        if n.domain == DOMAIN and n.op_type in PLUGIN_OPS:
            attrs = {a.name: a.s.decode() for a in n.attribute if a.name in ("plugin_version", "plugin_namespace")}
            nodes.append({"name": n.name, "op": n.op_type, "version": attrs.get("plugin_version", PLUGIN_VERSION),
                          "namespace": attrs.get("plugin_namespace", "")})
    return nodes


def _graph_entry(path: Path, built: BuiltGraph, graph_file: GraphFile) -> dict:
    ops = {n.op_type for n in built.model.graph.node}
    data = graph_file.data
    return {"file": path.name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
            **graph_file.manifest_entry(),
            "inputs": [io.as_dict() for io in built.inputs], "outputs": [io.as_dict() for io in built.outputs],
            "plugins": sorted(op for op in ops if op in PLUGIN_OPS), "plugin_nodes": _plugin_nodes(built),
            "linear_forms": _form_counts(built.linear_forms), "linears": built.linear_forms}


def _form_counts(forms: dict[str, str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for form in forms.values():
        counts[form] = counts.get(form, 0) + 1
    return dict(sorted(counts.items()))


def build_manifest(source: ExportSource, precision: str, scan: str, graphs: dict[str, tuple[Path, BuiltGraph, GraphFile]],
                   seconds: float, batch_max: int | None, seq_max: int | None, folder: Path) -> dict:
    """The manifest of an export set written to `folder` (read back by mq_deploy.deploy.Manifest)."""
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
                 "online_transforms": {**{p: "hadamard" for p in sorted(source.hadamard_signs)},
                                       **{p: "matrix" for p in sorted(source.online_matrices)},
                                       **{p: "scale" for p in sorted(source.channel_scales)}},
                 "gate_scale_layers": [i for i, layer in enumerate(source.model.backbone.layers)
                                       if layer.mixer.gate_scale is not None],
                 "deviation_from_paper": SCAN_DEVIATION}
    return {
        "manifest_version": MANIFEST_VERSION, "producer": f"mq-deploy {__version__}",
        "source": {"path": str(Path(source.path).resolve()), "relative_path": relative_source(source.path, folder),
                   "sha256": source.sha256, "kind": "quantized artifact" if source.recipe else "FP checkpoint"},
        "model": model_entry(source.config), "quantization": quant,
        "precision": precision, "scan": scan,
        # out_proj input quantizers fused into the Hadamard before them (HadamardQuantize nodes)
        "fused_quantize": sorted({n["name"] for e in entries.values() for n in e["plugin_nodes"]
                                  if n["op"] == HADAMARD_QUANTIZE_OP}),
        "opset": {"ai.onnx": opset, **({DOMAIN: DOMAIN_VERSION} if used else {})}, "ir_version": ir_version,
        "plugins": [{"name": p, "version": PLUGIN_VERSION, "namespace": PLUGIN_NAMESPACE, "domain": DOMAIN}
                    for p in used],
        "graphs": entries,
        **({"preprocessing": preprocessing_entry(source.config)} if is_vision(source.config)
           else {"state": state_note(source.config)}),
        "profile": {"batch_max": batch_max, "seq_max": seq_max},
        "export_seconds": round(seconds, 3),
    }


def manifest_bytes(manifest: dict) -> bytes:
    return (json.dumps(manifest, indent=2) + "\n").encode("utf-8")
