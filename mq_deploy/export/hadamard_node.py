"""The HadamardTransform op (plugins/hadamard/README.md): y = x·diag(signs)·H_n over
the last axis. As a plugin node with a local function (Mul, then H_n as two small ±1 factors,
in float32 like the kernel), or inline with standard ops (`--scan onnx`): Mul by the signs, then the
same two factors as two MatMuls in the graph's float type.

HadamardQuantize is the same transform with out_proj's INT8 input quantization in its epilogue
(`export --fuse-quantize`): the float32 result goes straight to QuantizeLinear, with no rounding to
the graph's float type in between, as the kernel does it.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..quant.transforms.hadamard import hadamard_kron_pair
from .onnx_builder import DOMAIN, OPSET, GraphBuilder
from ..deploy.contract import (HADAMARD_INPUTS, HADAMARD_OP, HADAMARD_OUTPUTS, HADAMARD_QUANTIZE_INPUTS,
                               HADAMARD_QUANTIZE_OP, HADAMARD_QUANTIZE_OUTPUTS, PLUGIN_NAMESPACE, PLUGIN_VERSION)

OP_TYPE = HADAMARD_OP
INPUTS, OUTPUTS = HADAMARD_INPUTS, HADAMARD_OUTPUTS
ATTRIBUTES = {"plugin_version": PLUGIN_VERSION, "plugin_namespace": PLUGIN_NAMESPACE}


def emit_hadamard_node(b: GraphBuilder, x: str, signs: str, name: str) -> str:
    return b.node(OP_TYPE, [x, signs], name=name, domain=DOMAIN, **ATTRIBUTES)


def emit_hadamard_quantize_node(b: GraphBuilder, x: str, signs: str, scale: str, name: str) -> str:
    """INT8 codes of x·diag(signs)·H_n at the per-tensor `scale` (a scalar in x's type)."""
    return b.node(HADAMARD_QUANTIZE_OP, [x, signs, scale], name=name, domain=DOMAIN, **ATTRIBUTES)


def emit_hadamard_inline(b: GraphBuilder, x: str, signs, float_type: int, name: str, lead_dims: int = 2) -> str:
    """x·diag(signs)·H_n with standard ops in the graph's float type: Mul by the layer's signs, x viewed
    as [..., n/r, r], times R/√r on the right and Lᵀ/√(n/r) on the left (H_n = kron(L, R)/√n,
    hadamard_kron_pair), back to [..., n]. Each factor is orthonormal, so FP16 intermediates keep
    x's magnitude. Not one n×n MatMul with diag(signs)·H_n: at mamba-2.8b's d_inner 5120 that was a
    52 MB FP16 constant per layer (3.4 GB over 64 layers, beside 5.5 GB of weights) and n² multiply-adds
    a token, twice out_proj's; the factors are ~√n wide, n·(n/r + r) a token, and shared by every layer.

    lead_dims: x's dims before the channels ([batch, seqlen]: 2). Both reshapes are constants that copy
    them (0 = keep that dim), so shape inference keeps batch, seqlen and n through the transform."""
    dtype = np.float16 if float_type == TensorProto.FLOAT16 else np.float32
    n = signs.numel()
    left, right = (f.numpy().astype(np.float64) for f in hadamard_kron_pair(n))
    rows, cols = left.shape[0], right.shape[0]
    keep = [0] * lead_dims
    signed = b.node("Mul", [x, b.const(signs.numpy().astype(dtype), f"{name}.signs")], name=f"{name}.apply_signs")
    grid = b.node("Reshape", [signed, b.small([*keep, rows, cols])], name=f"{name}.grid")
    x_r = b.node("MatMul", [grid, b.shared(right / np.sqrt(cols), dtype, f"hadamard_{n}_R")], name=f"{name}.apply_R")
    x_lr = b.node("MatMul", [b.shared(left.T / np.sqrt(rows), dtype, f"hadamard_{n}_Lt"), x_r], name=f"{name}.apply_L")
    return b.node("Reshape", [x_lr, b.small([*keep, n])], name=name)


def _constant(name: str, array: np.ndarray) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], name=name, value=numpy_helper.from_array(array, name))


def _transform_nodes(size: int) -> list[onnx.NodeProto]:
    """x (any float type) -> y_f32 = float32(x)·diag(signs)·H_n, as the kernel computes it.

    H_n = kron(L, R) / sqrt(n) (hadamard_kron_pair): x is viewed as [-1, n/r, r] and multiplied
    by R on the right and Lᵀ on the left, so the body holds two ~sqrt(n)-sized ±1 INT8 constants, not
    an n×n one. ONNX Runtime inlines the function at every call site, and 64 layers of a 5120×5120
    constant (1.7 GB) exceeded its cumulative expansion limit: a mamba-2.8b / mamba2-2.7b export
    could not run there."""
    left, right = (f.numpy() for f in hadamard_kron_pair(size))
    rows, cols = left.shape[0], right.shape[0]
    return [
        helper.make_node("Cast", ["x"], ["x_f32"], name="x_f32", to=TensorProto.FLOAT),
        helper.make_node("Mul", ["x_f32", "signs"], ["x_signed"], name="apply_signs"),
        helper.make_node("Shape", ["x_signed"], ["rows_shape"], name="rows_shape"),
        _constant("grid_shape", np.array([-1, rows, cols], np.int64)),
        helper.make_node("Reshape", ["x_signed", "grid_shape"], ["x_grid"], name="x_grid"),
        _constant("R_pm1", right),
        helper.make_node("Cast", ["R_pm1"], ["R_f32"], name="R_f32", to=TensorProto.FLOAT),
        _constant("Lt_pm1", np.ascontiguousarray(left.T)),
        helper.make_node("Cast", ["Lt_pm1"], ["Lt_f32"], name="Lt_f32", to=TensorProto.FLOAT),
        helper.make_node("MatMul", ["x_grid", "R_f32"], ["x_R"], name="apply_R"),
        helper.make_node("MatMul", ["Lt_f32", "x_R"], ["x_LR"], name="apply_L"),
        helper.make_node("Reshape", ["x_LR", "rows_shape"], ["x_H"], name="x_H"),
        _constant("inv_sqrt_n", np.array(1 / np.sqrt(size), np.float32)),
        helper.make_node("Mul", ["x_H", "inv_sqrt_n"], ["y_f32"], name="normalize"),
    ]


def _function(op: str, inputs, outputs, nodes) -> onnx.FunctionProto:
    function = helper.make_function(DOMAIN, op, list(inputs), list(outputs), nodes,
                                    [helper.make_opsetid("", OPSET)], attributes=[])
    function.attribute_proto.extend(helper.make_attribute(k, v) for k, v in ATTRIBUTES.items())
    return function


def hadamard_function(size: int) -> onnx.FunctionProto:
    """mq_deploy.HadamardTransform for rows of `size` (one size per model: every online Hadamard of a
    Mamba LM sits before an out_proj of width d_inner)."""
    nodes = _transform_nodes(size) + [helper.make_node("CastLike", ["y_f32", "x"], ["y"], name="y_dtype")]
    return _function(OP_TYPE, INPUTS, OUTPUTS, nodes)


def hadamard_quantize_function(size: int) -> onnx.FunctionProto:
    """mq_deploy.HadamardQuantize for rows of `size`: QuantizeLinear of the float32 transform at
    float32(scale), zero point 0 (round half to even, saturate to [-128, 127])."""
    nodes = _transform_nodes(size) + [
        helper.make_node("Cast", ["scale"], ["scale_f32"], name="scale_f32", to=TensorProto.FLOAT),
        _constant("zero_point", np.zeros((), np.int8)),
        helper.make_node("QuantizeLinear", ["y_f32", "scale_f32", "zero_point"], ["y"], name="quantize"),
    ]
    return _function(HADAMARD_QUANTIZE_OP, HADAMARD_QUANTIZE_INPUTS, HADAMARD_QUANTIZE_OUTPUTS, nodes)
