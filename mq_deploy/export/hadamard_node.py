"""The HadamardTransform op (DESIGN.md §3.2, plugins/hadamard/README.md): y = x·diag(signs)·H_n over
the last axis. As a plugin node with a local function (Mul + MatMul with the constant H_n, in
float32 like the kernel), or inline as one MatMul with the constant diag(signs)·H_n (`--scan onnx`).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..quant.transforms.hadamard import hadamard_matrix, signed_hadamard_matrix
from .onnx_builder import DOMAIN, OPSET, GraphBuilder
from ..deploy.contract import HADAMARD_INPUTS, HADAMARD_OP, HADAMARD_OUTPUTS, PLUGIN_NAMESPACE, PLUGIN_VERSION

OP_TYPE = HADAMARD_OP
INPUTS, OUTPUTS = HADAMARD_INPUTS, HADAMARD_OUTPUTS
ATTRIBUTES = {"plugin_version": PLUGIN_VERSION, "plugin_namespace": PLUGIN_NAMESPACE}


def emit_hadamard_node(b: GraphBuilder, x: str, signs: str, name: str) -> str:
    return b.node(OP_TYPE, [x, signs], name=name, domain=DOMAIN, **ATTRIBUTES)


def emit_hadamard_inline(b: GraphBuilder, x: str, signs, float_type: int, name: str) -> str:
    """x @ (diag(signs)·H_n) as one MatMul with a constant in the graph's float type."""
    matrix = signed_hadamard_matrix(signs).numpy().astype(np.float16 if float_type == TensorProto.FLOAT16
                                                          else np.float32)
    return b.node("MatMul", [x, b.const(matrix, f"{name}.matrix")], name=name)


def hadamard_function(size: int) -> onnx.FunctionProto:
    """mq_deploy.HadamardTransform for rows of `size` (one size per model: every online Hadamard of a
    Mamba LM sits before an out_proj of width d_inner)."""
    # stored as the ±1 matrix in INT8 (a quarter of float32) times 1/sqrt(n)
    unnormalized = np.rint(hadamard_matrix(size).numpy() * np.sqrt(size)).astype(np.int8)
    nodes = [
        helper.make_node("Cast", ["x"], ["x_f32"], name="x_f32", to=TensorProto.FLOAT),
        helper.make_node("Mul", ["x_f32", "signs"], ["x_signed"], name="apply_signs"),
        helper.make_node("Constant", [], ["H_pm1"], name="H_pm1",
                         value=numpy_helper.from_array(unnormalized, "H_pm1")),
        helper.make_node("Cast", ["H_pm1"], ["H_pm1_f32"], name="H_pm1_f32", to=TensorProto.FLOAT),
        helper.make_node("Constant", [], ["inv_sqrt_n"], name="inv_sqrt_n",
                         value=numpy_helper.from_array(np.array(1 / np.sqrt(size), np.float32), "inv_sqrt_n")),
        helper.make_node("MatMul", ["x_signed", "H_pm1_f32"], ["x_H"], name="apply_H"),
        helper.make_node("Mul", ["x_H", "inv_sqrt_n"], ["y_f32"], name="normalize"),
        helper.make_node("CastLike", ["y_f32", "x"], ["y"], name="y_dtype"),
    ]
    function = helper.make_function(DOMAIN, OP_TYPE, list(INPUTS), list(OUTPUTS), nodes,
                                    [helper.make_opsetid("", OPSET)], attributes=[])
    function.attribute_proto.extend(helper.make_attribute(k, v) for k, v in ATTRIBUTES.items())
    return function
