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
from .selective_scan_node import PLUGIN_NAMESPACE, PLUGIN_VERSION

OP_TYPE = "HadamardTransform"
INPUTS = ("x", "signs")
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
    h = hadamard_matrix(size).numpy().astype(np.float32)
    nodes = [
        helper.make_node("Cast", ["x"], ["x_f32"], name="x_f32", to=TensorProto.FLOAT),
        helper.make_node("Mul", ["x_f32", "signs"], ["x_signed"], name="apply_signs"),
        helper.make_node("Constant", [], ["H"], name="H", value=numpy_helper.from_array(h, "H")),
        helper.make_node("MatMul", ["x_signed", "H"], ["y_f32"], name="apply_H"),
        helper.make_node("CastLike", ["y_f32", "x"], ["y"], name="y_dtype"),
    ]
    function = helper.make_function(DOMAIN, OP_TYPE, list(INPUTS), ["y"], nodes,
                                    [helper.make_opsetid("", OPSET)], attributes=[])
    function.attribute_proto.extend(helper.make_attribute(k, v) for k, v in ATTRIBUTES.items())
    return function
