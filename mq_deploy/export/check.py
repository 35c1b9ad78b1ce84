"""`mq-deploy check`: does an exported graph follow the contracts TensorRT needs?

- onnx.checker full check (types and shapes inferred through the local functions);
- QDQ (docs/export.md, "Quantization"): INT8 weight initializers, INT8 zero zero-points, scales in the graph's float
  type, weights per output channel (axis=1 of the (K, N) weight), activations per tensor, every
  DequantizeLinear feeding a MatMul directly;
- every mq_deploy node (SelectiveScan, SSDScan, HadamardTransform, HadamardQuantize) has the plugin
  attributes, its full input list, FP32 where the contract says FP32, and a local function ORT can run;
  an activation DequantizeLinear reads a QuantizeLinear's codes or a HadamardQuantize's, at their scale;
- batch (and seqlen in the prefill graph) are symbolic at every input and output, also after shape
  inference (a dimension that became a constant is an error);
- FP16 graphs: no FP32 island, i.e. no MatMul / Conv / Gather / Q / DQ / plugin activation in FP32.
  FP32 is allowed where the contract puts it: the residual stream and RMSNorm statistics
  (elementwise ops), the SSM state and the scan's parameters, the logits output.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from . import hadamard_node, selective_scan_node, ssd_scan_node
from ..deploy.contract import (HADAMARD_QUANTIZE_INPUTS, HADAMARD_QUANTIZE_OP, SCAN_ATTRIBUTES,
                               SSD_SCAN_FLAG_ATTRIBUTES, SSD_SCAN_FLOAT_ATTRIBUTES, SSD_SCAN_INT_ATTRIBUTES)
from .onnx_builder import DOMAIN

HEAVY_OPS = ("MatMul", "Gemm", "Conv", "ConvTranspose", "Gather")
ACTIVATION_QUANTIZERS = ("QuantizeLinear", HADAMARD_QUANTIZE_OP)     # what an activation DequantizeLinear reads
META_GRAPH, META_PRECISION = "mq_deploy.graph", "mq_deploy.precision"


@dataclass
class Problem:
    where: str
    what: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


def _types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every tensor, declared or inferred."""
    types = {}
    for vi in list(model.graph.input) + list(model.graph.output) + list(model.graph.value_info):
        types[vi.name] = vi.type.tensor_type.elem_type
    for init in model.graph.initializer:
        types[init.name] = init.data_type
    return types


def _dims(vi) -> list:
    return [d.dim_param or (d.dim_value if d.HasField("dim_value") else None) for d in vi.type.tensor_type.shape.dim]


def _check_dynamic_dims(model: onnx.ModelProto, inferred: onnx.ModelProto | None, kind: str) -> list[Problem]:
    problems = []
    # a vision graph's images and logits have a batch dim only
    dynamic = {0: "batch"} if kind == "decode" or model.graph.name == "vision_mamba" else {0: "batch", 1: "seqlen"}
    declared = {vi.name: _dims(vi) for vi in list(model.graph.input) + list(model.graph.output)}
    after = {vi.name: _dims(vi) for vi in inferred.graph.output} if inferred is not None else {}
    for name, dims in declared.items():
        if name.startswith(("conv_state", "ssm_state")):
            want = {0: "batch"}
        else:
            want = dynamic
        for axis, label in want.items():
            if axis >= len(dims) or dims[axis] != label:
                problems.append(Problem(name, f"dimension {axis} should be the symbolic '{label}', is {dims[axis:axis + 1]}"))
            elif name in after and axis < len(after[name]) and isinstance(after[name][axis], int):
                problems.append(Problem(name, f"dimension {axis} ('{label}') becomes the constant {after[name][axis]} "
                                              "after shape inference: something in the graph fixed it"))
    return problems


def _consumers(graph: onnx.GraphProto) -> dict[str, list[tuple[onnx.NodeProto, int]]]:
    out: dict[str, list] = {}
    for node in graph.node:
        for i, name in enumerate(node.input):
            out.setdefault(name, []).append((node, i))
    return out


def _check_weight_dq(where: str, w, scale, node, axis: int, conv: bool) -> list[Problem]:
    """MatMul INT8: (K, N) codes, per-output-channel scale [N] on axis 1. MatMul INT4: (K, N) codes
    blocked along K (axis 0, block_size dividing K, scale (K / block_size, N)). Depthwise Conv INT8:
    (D, 1, K) codes, per-channel scale [D] on axis 0."""
    if conv:
        if w.data_type != TensorProto.INT8 or len(w.dims) != 3 or axis != 0 or list(scale.dims) != [w.dims[0]]:
            return [Problem(where, f"a Conv weight must be INT8 (D, 1, K) with a per-channel scale on axis 0, got "
                                   f"{TensorProto.DataType.Name(w.data_type)} {list(w.dims)}, axis {axis}, "
                                   f"scale {list(scale.dims)}")]
        return []
    if w.data_type == TensorProto.INT8:
        if len(w.dims) != 2 or axis != 1 or list(scale.dims) != [w.dims[1]]:
            return [Problem(where, f"INT8 weight must be (K, N) with a per-output-channel scale on axis 1, "
                                   f"got weight {list(w.dims)}, axis {axis}, scale {list(scale.dims)}")]
        return []
    if w.data_type == TensorProto.INT4:
        block = next((a.i for a in node.attribute if a.name == "block_size"), 0)
        if (len(w.dims) != 2 or axis != 0 or block < 1 or w.dims[0] % block
                or list(scale.dims) != [w.dims[0] // block, w.dims[1]]):
            return [Problem(where, f"INT4 weight must be (K, N) blocked along K (axis 0, block_size dividing K, "
                                   f"scale (K/block_size, N)), got weight {list(w.dims)}, axis {axis}, "
                                   f"block_size {block}, scale {list(scale.dims)}")]
        return []
    return [Problem(where, "weight initializer must be INT8 or INT4 (pre-quantized)")]


def _check_qdq(graph: onnx.GraphProto, float_type: int) -> list[Problem]:
    problems = []
    inits = {t.name: t for t in graph.initializer}
    producers = {o: n for n in graph.node for o in n.output}
    consumers = _consumers(graph)
    for node in graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        where = f"{node.op_type} {node.name}"
        if len(node.input) < 3 or node.input[2] not in inits:
            problems.append(Problem(where, "zero point missing or not an initializer (TensorRT needs a constant 0)"))
            continue
        zp, scale = inits[node.input[2]], inits.get(node.input[1])
        source_type = inits[node.input[0]].data_type if node.input[0] in inits else TensorProto.INT8
        if zp.data_type != source_type or zp.data_type not in (TensorProto.INT8, TensorProto.INT4) \
                or np.any(numpy_helper.to_array(zp).astype(np.int8) != 0):
            problems.append(Problem(where, "zero point must be zeros of the weight's type, INT8 or INT4 "
                                           "(symmetric quantization)"))
        if scale is None:
            problems.append(Problem(where, "scale is not an initializer (TensorRT needs a build-time constant)"))
            continue
        if scale.data_type != float_type:
            problems.append(Problem(where, f"scale is {TensorProto.DataType.Name(scale.data_type)}, the graph is "
                                           f"{TensorProto.DataType.Name(float_type)}"))
        if np.any(numpy_helper.to_array(scale).astype(np.float64) <= 0):
            problems.append(Problem(where, "scale must be strictly positive"))
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        if node.op_type == "DequantizeLinear":
            feeds = consumers.get(node.output[0], [])
            # a conv input's DQ also feeds the Slice that carries the (quantized) window as the state
            allowed = {"MatMul", "Conv", "Slice"} if any(c.op_type == "Conv" for c, _ in feeds) else {"MatMul", "Conv"}
            for consumer, slot in feeds:
                if consumer.op_type not in allowed:
                    problems.append(Problem(where, f"feeds {consumer.op_type} {consumer.name}; a DequantizeLinear "
                                                   "must feed the MatMul or Conv directly"))
            source = node.input[0]
            if source in inits:                       # a weight
                problems += _check_weight_dq(where, inits[source], scale, node, axis,
                                             conv=any(c.op_type == "Conv" for c, _ in feeds))
            elif source not in producers or producers[source].op_type not in ACTIVATION_QUANTIZERS:
                problems.append(Problem(where, "activation DequantizeLinear is not fed by a QuantizeLinear"))
            elif producers[source].op_type == HADAMARD_QUANTIZE_OP and producers[source].input[2] != node.input[1]:
                problems.append(Problem(where, f"dequantizes {producers[source].name}'s codes with another scale "
                                               "than the one they were quantized with"))
            elif scale.dims:
                problems.append(Problem(where, "activation scale must be per tensor (a scalar)"))
        elif scale.dims:
            problems.append(Problem(where, "activation QuantizeLinear must be per tensor (scalar scale)"))
    return problems


def _check_custom_nodes(model: onnx.ModelProto, types: dict[str, int], float_type: int) -> list[Problem]:
    problems = []
    functions = {(f.domain, f.name) for f in model.functions}
    opsets = {o.domain: o.version for o in model.opset_import}
    contracts = {selective_scan_node.OP_TYPE: (selective_scan_node.INPUTS, selective_scan_node.FP32_INPUTS, 2),
                 ssd_scan_node.OP_TYPE: (ssd_scan_node.INPUTS, ssd_scan_node.FP32_INPUTS, 2),
                 hadamard_node.OP_TYPE: (hadamard_node.INPUTS, ("signs",), 1),
                 HADAMARD_QUANTIZE_OP: (HADAMARD_QUANTIZE_INPUTS, ("signs",), 1)}
    for node in model.graph.node:
        if node.op_type not in contracts and node.domain != DOMAIN:
            continue
        where = f"{node.op_type} {node.name}"
        if node.op_type not in contracts:
            problems.append(Problem(where, f"unknown op in domain {DOMAIN}"))
            continue
        inputs, fp32_inputs, n_out = contracts[node.op_type]
        if node.domain != DOMAIN or opsets.get(DOMAIN) != 1:
            problems.append(Problem(where, f"must be in domain {DOMAIN} with opset import {DOMAIN} version 1"))
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        for key, want in (("plugin_version", b"1"), ("plugin_namespace", b"mq_deploy")):
            if attrs.get(key) != want:
                problems.append(Problem(where, f"attribute {key} must be {want.decode()!r} (TensorRT plugin lookup), "
                                               f"got {attrs.get(key)!r}"))
        if node.op_type == selective_scan_node.OP_TYPE:
            for key in SCAN_ATTRIBUTES:
                if attrs.get(key) not in (0, 1):
                    problems.append(Problem(where, f"attribute {key} must be 0 or 1, got {attrs.get(key)!r}"))
        if node.op_type == ssd_scan_node.OP_TYPE:
            problems += _check_ssd_attributes(where, attrs)
        if len(node.input) != len(inputs) or not all(node.input) or len(node.output) != n_out:
            problems.append(Problem(where, f"needs exactly {len(inputs)} non-empty inputs ({', '.join(inputs)}) "
                                           f"and {n_out} outputs, has {len(node.input)} / {len(node.output)}"))
            continue
        for name, tensor in zip(inputs, node.input):
            want = TensorProto.FLOAT if name in fp32_inputs else float_type
            if types.get(tensor, want) != want:
                problems.append(Problem(where, f"input {name} ({tensor}) is {TensorProto.DataType.Name(types[tensor])}, "
                                               f"the contract wants {TensorProto.DataType.Name(want)}"))
        if (DOMAIN, node.op_type) not in functions:
            problems.append(Problem(where, f"no local function {DOMAIN}.{node.op_type}: ONNX Runtime cannot run it"))
    return problems


def _check_ssd_attributes(where: str, attrs: dict) -> list[Problem]:
    problems = []
    for key in SSD_SCAN_INT_ATTRIBUTES:
        if not isinstance(attrs.get(key), int) or attrs[key] < 1:
            problems.append(Problem(where, f"attribute {key} must be a positive int, got {attrs.get(key)!r}"))
    for key in SSD_SCAN_FLAG_ATTRIBUTES:
        if attrs.get(key, 1) not in (0, 1):
            problems.append(Problem(where, f"attribute {key} must be 0 or 1, got {attrs.get(key)!r}"))
    limits = [attrs.get(key, default) for key, default in zip(SSD_SCAN_FLOAT_ATTRIBUTES, (0.0, float("inf")))]
    if not all(isinstance(v, float) for v in limits) or not limits[0] <= limits[1]:
        problems.append(Problem(where, f"attributes dt_min, dt_max must be floats with dt_min <= dt_max, got {limits}"))
    return problems


def _check_fp32_islands(graph: onnx.GraphProto, types: dict[str, int]) -> list[Problem]:
    problems = []
    for node in graph.node:
        if node.op_type in HEAVY_OPS:
            tensors = list(node.input[:2] if node.op_type != "Gather" else node.input[:1]) + list(node.output)
        elif node.op_type == "QuantizeLinear":
            tensors = [node.input[0]]
        elif node.op_type == "DequantizeLinear":
            tensors = [node.output[0]]
        else:
            continue
        for t in tensors:
            if types.get(t) == TensorProto.FLOAT:
                problems.append(Problem(f"{node.op_type} {node.name}", f"runs in FP32 ({t}) in an FP16 graph"))
    return problems


def check_model(model: onnx.ModelProto, path=None) -> list[Problem]:
    """Every contract violation of an exported model (an empty list: the graph is fine). `path`: the
    file the model was read from, needed when its large tensors are external data (the checker then
    reads the graph from the file; the proto may hold references only)."""
    meta = {p.key: p.value for p in model.metadata_props}
    kind, precision = meta.get(META_GRAPH, "prefill"), meta.get(META_PRECISION)
    problems = []
    try:
        onnx.checker.check_model(str(path) if path is not None else model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        problems.append(Problem("onnx.checker", str(e).strip().splitlines()[0]))
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    except Exception as e:  # noqa: BLE001 - reported, not raised: check lists everything it finds
        problems.append(Problem("shape inference", str(e).strip().splitlines()[0]))
        inferred = None
    types = _types(inferred if inferred is not None else model)
    float_type = {"fp16": TensorProto.FLOAT16, "fp32": TensorProto.FLOAT}.get(precision)
    if float_type is None:
        problems.append(Problem("metadata", f"{META_PRECISION} is {precision!r}; this is not an mq-deploy export"))
        float_type = TensorProto.FLOAT
    problems += _check_qdq(model.graph, float_type)
    problems += _check_custom_nodes(model, types, float_type)
    problems += _check_dynamic_dims(model, inferred, kind)
    if float_type == TensorProto.FLOAT16:
        problems += _check_fp32_islands(model.graph, types)
    return problems


def check_onnx(path) -> list[Problem]:
    """check_model on a file of a complete export set (external data is loaded from beside it), plus
    a problem for every file of the set that is not the one export wrote. A graph without its
    manifest, or a manifest that lists a missing file, is one MQDeployError: not an export set."""
    from ..deploy.manifest import Manifest
    from ..errors import MQDeployError
    path = Path(path)
    if not path.is_file():
        raise MQDeployError(f"{path} does not exist; give the .onnx file written by `mq-deploy export`")
    manifest = Manifest.load(path)
    manifest.graph_of(path)
    manifest.require_complete()
    try:
        model = onnx.load(str(path), load_external_data=False)   # external tensors stay on disk
    except Exception as e:  # noqa: BLE001 - any parse failure is the same user problem
        raise MQDeployError(f"{path} is not a readable ONNX model ({type(e).__name__}: {e}); re-export it") from None
    problems = [Problem(name, "is not the file export wrote (sha256 differs from manifest.json): edited since, or "
                              "an interrupted write; re-export") for name in manifest.modified_files()]
    return problems + check_model(model, path=path)
