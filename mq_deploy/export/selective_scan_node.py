"""The SelectiveScan op (plugins/selective_scan/README.md): the plugin node and the
standard-op body that is both its ONNX local function and the `--scan onnx` inline form.

The body computes in float32 whatever the activation dtype (the kernel's accumulation), runs the
recurrence with an ONNX `Scan` over the sequence axis, and casts y back to x's dtype (CastLike),
so one function serves FP16 and FP32 graphs.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from .onnx_builder import DOMAIN, OPSET, GraphBuilder
from ..deploy.contract import (PLUGIN_NAMESPACE, PLUGIN_VERSION, SCAN_FP32_INPUTS, SCAN_INPUTS, SCAN_OP,
                               SCAN_OUTPUTS)

OP_TYPE = SCAN_OP
INPUTS, OUTPUTS, FP32_INPUTS = SCAN_INPUTS, SCAN_OUTPUTS, SCAN_FP32_INPUTS
ATTRIBUTES = {"plugin_version": PLUGIN_VERSION, "plugin_namespace": PLUGIN_NAMESPACE,
              "delta_softplus": 1, "reverse": 0}
INT64_MAX, INT64_MIN = np.iinfo(np.int64).max, np.iinfo(np.int64).min
FLOAT = TensorProto.FLOAT


def plugin_attributes(delta_softplus: bool = True, reverse: bool = False) -> dict:
    return {**ATTRIBUTES, "delta_softplus": int(delta_softplus), "reverse": int(reverse)}


def emit_selective_scan_node(b: GraphBuilder, inputs: list[str], name: str, outputs: list[str] | None = None,
                             delta_softplus: bool = True, reverse: bool = False) -> list[str]:
    """One SelectiveScan node (the TensorRT plugin; ORT runs the local function)."""
    if len(inputs) != len(INPUTS):
        raise ValueError(f"SelectiveScan takes {len(INPUTS)} inputs ({', '.join(INPUTS)}), got {len(inputs)}")
    return b.node(OP_TYPE, inputs, outputs or 2, name=name, domain=DOMAIN,
                  **plugin_attributes(delta_softplus, reverse))


def _flag(b: GraphBuilder, value, attr: str) -> str:
    """An int64 scalar holding a node attribute: a literal when inlining, a reference in a function."""
    if value == "ref":
        node = helper.make_node("Constant", [], [b.unique(f"{attr}_value")], name=b.unique(f"{attr}_attr"))
        node.attribute.append(helper.make_attribute_ref("value_int", onnx.AttributeProto.INT, ref_attr_name=attr))
        b.nodes.append(node)
        return node.output[0]
    return b.small(int(value))


def _scan_step_graph() -> onnx.GraphProto:
    """One time step: h = exp(dt*A)*h + (dt*x)*B; y = <h, C>. A comes from the outer scope."""
    s = GraphBuilder(constants_as_nodes=True, prefix="step/")
    dt = s.node("Unsqueeze", ["dt_t", s.small([-1])], name="dt_col")                       # [b, D, 1]
    decay = s.node("Exp", [s.node("Mul", [dt, "scan_A"], name="dtA")], name="decay")      # [b, D, N]
    inp = s.node("Mul", [s.node("Unsqueeze", ["dtx_t", s.small([-1])], name="dtx_col"),
                         s.node("Unsqueeze", ["B_t", s.small([1])], name="B_row")], name="dBx")
    s.node("Add", [s.node("Mul", [decay, "h"], name="decay_h"), inp], ["h_next"], name="h_update")
    s.node("ReduceSum", [s.node("Mul", ["h_next", s.node("Unsqueeze", ["C_t", s.small([1])], name="C_row")],
                                name="hC"), s.small([-1])], ["y_t"], name="y_t", keepdims=0)
    ins = [helper.make_tensor_value_info("h", FLOAT, None)] + [
        helper.make_tensor_value_info(n, FLOAT, None) for n in ("dt_t", "dtx_t", "B_t", "C_t")]
    outs = [helper.make_tensor_value_info("h_next", FLOAT, None), helper.make_tensor_value_info("y_t", FLOAT, None)]
    return helper.make_graph(s.nodes, "selective_scan_step", ins, outs)


def emit_scan_body(b: GraphBuilder, inputs: list[str], outputs: list[str] | None = None, prefix: str = "scan",
                   delta_softplus="ref", reverse="ref") -> list[str]:
    """Standard-op SelectiveScan. delta_softplus / reverse: 0/1 to inline, "ref" inside the function."""
    x, delta, A, B, C, D, delta_bias, z, gate_scale = inputs
    p = prefix
    f = {name: b.cast(t, FLOAT, name=f"{p}/{name}_f32") for name, t in (("x", x), ("delta", delta), ("B", B),
                                                                       ("C", C), ("z", z))}
    v = b.node("Add", [f["delta"], delta_bias], name=f"{p}/delta_plus_bias")
    if delta_softplus == "ref":
        use = b.cast(_flag(b, "ref", "delta_softplus"), TensorProto.BOOL, name=f"{p}/softplus_flag")
        dt = b.node("Where", [use, b.node("Softplus", [v], name=f"{p}/softplus"), v], name=f"{p}/dt")
    else:
        dt = b.node("Softplus", [v], name=f"{p}/dt") if delta_softplus else v
    dtx = b.node("Mul", [dt, f["x"]], name=f"{p}/dt_x")
    scan_in = [dt, dtx, f["B"], f["C"]]
    if reverse == "ref" or reverse:
        # Flip time with one Slice (steps -1 when reverse, else +1): a reversed scan is a forward
        # scan over flipped inputs with its output flipped back.
        rev = _flag(b, reverse, "reverse")
        step = b.node("Sub", [b.small([1]), b.node("Mul", [b.node("Unsqueeze", [rev, b.small([0])], name=f"{p}/rev1"),
                                                           b.small([2])], name=f"{p}/rev2")], name=f"{p}/time_step")
        is_rev = b.cast(rev, TensorProto.BOOL, name=f"{p}/rev_flag")
        start = b.node("Where", [is_rev, b.small([-1]), b.small([0])], name=f"{p}/time_start")
        end = b.node("Where", [is_rev, b.small([INT64_MIN]), b.small([INT64_MAX])], name=f"{p}/time_end")
        flip = lambda t, n: b.node("Slice", [t, start, end, b.small([1]), step], name=f"{p}/flip_{n}")  # noqa: E731
        scan_in = [flip(t, n) for t, n in zip(scan_in, ("dt", "dtx", "B", "C"))]
    batch = b.node("Slice", [b.node("Shape", [f["x"]], name=f"{p}/x_shape"), b.small([0]), b.small([1])],
                   name=f"{p}/batch")
    state_shape = b.node("Concat", [batch, b.node("Shape", [A], name=f"{p}/A_shape")], name=f"{p}/state_shape", axis=0)
    h0 = b.node("ConstantOfShape", [state_shape], name=f"{p}/h0",
                value=helper.make_tensor("zero", FLOAT, [1], [0.0]))
    # the step body reads A by the outer-scope name "scan_A"
    a_outer = b.node("Identity", [A], ["scan_A"] if b.constants_as_nodes else [b.unique(f"{p}/scan_A")],
                     name=f"{p}/A")
    body = _scan_step_graph()
    if not b.constants_as_nodes:      # inline: give the outer name a unique value in this graph
        for node in body.node:
            node.input[:] = [a_outer if i == "scan_A" else i for i in node.input]
    final, ys = b.node("Scan", [h0] + scan_in, 2, name=f"{p}/recurrence", body=body, num_scan_inputs=4,
                       scan_input_axes=[1, 1, 1, 1], scan_output_axes=[1])
    if reverse == "ref" or reverse:
        ys = b.node("Slice", [ys, start, end, b.small([1]), step], name=f"{p}/flip_y")
    y = b.node("Add", [ys, b.node("Mul", [f["x"], D], name=f"{p}/D_x")], name=f"{p}/skip")
    gate = b.node("Mul", [f["z"], b.node("Sigmoid", [b.node("Mul", [gate_scale, f["z"]], name=f"{p}/s_z")],
                                         name=f"{p}/sigmoid_sz")], name=f"{p}/gate")
    y = b.node("Mul", [y, gate], name=f"{p}/gated")
    out_names = outputs or [b.unique(f"{p}/y"), b.unique(f"{p}/final_state")]
    b.node("CastLike", [y, x], [out_names[0]], name=f"{p}/y_dtype")
    b.node("Identity", [final], [out_names[1]], name=f"{p}/final_state")
    return out_names


def selective_scan_function() -> onnx.FunctionProto:
    """The model-local function mq_deploy.SelectiveScan (what ORT / Polygraphy execute)."""
    b = GraphBuilder(constants_as_nodes=True)
    emit_scan_body(b, list(INPUTS), list(OUTPUTS), prefix="body")
    function = helper.make_function(DOMAIN, OP_TYPE, list(INPUTS), list(OUTPUTS), b.nodes,
                                    [helper.make_opsetid("", OPSET)], attributes=[])
    function.attribute_proto.extend(helper.make_attribute(k, v) for k, v in ATTRIBUTES.items())
    return function


__all__ = ["OP_TYPE", "PLUGIN_VERSION", "PLUGIN_NAMESPACE", "INPUTS", "OUTPUTS", "FP32_INPUTS", "ATTRIBUTES",
           "emit_selective_scan_node", "emit_scan_body", "selective_scan_function", "plugin_attributes"]
