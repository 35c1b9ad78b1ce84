"""The HadamardTransform op (DESIGN.md §3.2, plugins/hadamard/README.md): y = x·diag(signs)·H_n over
the last axis. As a plugin node with a local function (Mul + MatMul with the constant H_n, in
float32 like the kernel), or inline as one MatMul with the constant diag(signs)·H_n (`--scan onnx`).

HadamardQuantize is the same transform with out_proj's INT8 input quantization in its epilogue
(`export --fuse-quantize`): the float32 result goes straight to QuantizeLinear, with no rounding to
the graph's float type in between, as the kernel does it.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..quant.transforms.hadamard import hadamard_matrix, signed_hadamard_matrix
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


def emit_hadamard_inline(b: GraphBuilder, x: str, signs, float_type: int, name: str) -> str:
    """x @ (diag(signs)·H_n) as one MatMul with a constant in the graph's float type."""
    matrix = signed_hadamard_matrix(signs).numpy().astype(np.float16 if float_type == TensorProto.FLOAT16
                                                          else np.float32)
    return b.node("MatMul", [x, b.const(matrix, f"{name}.matrix")], name=name)


def _transform_nodes(size: int) -> list[onnx.NodeProto]:
    """x (any float type) -> y_f32 = float32(x)·diag(signs)·H_n, as the kernel computes it."""
    # H_n stored as the ±1 matrix in INT8 (a quarter of float32) times 1/sqrt(n)
    unnormalized = np.rint(hadamard_matrix(size).numpy() * np.sqrt(size)).astype(np.int8)
    return [
        helper.make_node("Cast", ["x"], ["x_f32"], name="x_f32", to=TensorProto.FLOAT),
        helper.make_node("Mul", ["x_f32", "signs"], ["x_signed"], name="apply_signs"),
        helper.make_node("Constant", [], ["H_pm1"], name="H_pm1",
                         value=numpy_helper.from_array(unnormalized, "H_pm1")),
        helper.make_node("Cast", ["H_pm1"], ["H_pm1_f32"], name="H_pm1_f32", to=TensorProto.FLOAT),
        helper.make_node("Constant", [], ["inv_sqrt_n"], name="inv_sqrt_n",
                         value=numpy_helper.from_array(np.array(1 / np.sqrt(size), np.float32), "inv_sqrt_n")),
        helper.make_node("MatMul", ["x_signed", "H_pm1_f32"], ["x_H"], name="apply_H"),
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
        helper.make_node("Constant", [], ["zero_point"], name="zero_point",
                         value=numpy_helper.from_array(np.zeros((), np.int8), "zero_point")),
        helper.make_node("QuantizeLinear", ["y_f32", "scale_f32", "zero_point"], ["y"], name="quantize"),
    ]
    return _function(HADAMARD_QUANTIZE_OP, HADAMARD_QUANTIZE_INPUTS, HADAMARD_QUANTIZE_OUTPUTS, nodes)
