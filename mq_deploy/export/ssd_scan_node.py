"""The SSDScan op (Mamba-2's scan; deploy/contract.py, plugins/ssd_scan/README.md): the plugin node,
and the standard-op body that is both its ONNX local function and the `--scan onnx` inline form.

    x [B, L, H*P], dt [B, L, H], A [H] fp32, B and C [B, L, G*N], D [H] fp32, dt_bias [H] fp32
    -> y [B, L, H*P] (x's dtype), final_state [B, H, P, N] fp32
    attributes head_dim = P, n_groups = G, dt_softplus, dt_min, dt_max

The body is ops/ssd_scan.py's `ssd_scan_ref` in ONNX: float32 throughout, B and C repeated to the
heads of their group (Reshape + Expand), and a `Scan` over the sequence axis whose state is the
[B, H, P, N] SSM state. It computes whatever the dims; the plugin is the fast form.
"""

from __future__ import annotations

import math

import onnx
from onnx import TensorProto, helper

from .onnx_builder import DOMAIN, OPSET, GraphBuilder
from ..deploy.contract import (PLUGIN_NAMESPACE, PLUGIN_VERSION, SSD_SCAN_FP32_INPUTS, SSD_SCAN_INPUTS, SSD_SCAN_OP,
                               SSD_SCAN_OUTPUTS)

OP_TYPE = SSD_SCAN_OP
INPUTS, OUTPUTS, FP32_INPUTS = SSD_SCAN_INPUTS, SSD_SCAN_OUTPUTS, SSD_SCAN_FP32_INPUTS
# attributes with a default (the function's attribute_proto); head_dim and n_groups have none
DEFAULTS = {"plugin_version": PLUGIN_VERSION, "plugin_namespace": PLUGIN_NAMESPACE, "dt_softplus": 1,
            "dt_min": 0.0, "dt_max": math.inf}
REQUIRED = ("head_dim", "n_groups")
FLOAT = TensorProto.FLOAT


def plugin_attributes(head_dim: int, n_groups: int, dt_softplus: bool = True, dt_limit=(0.0, math.inf)) -> dict:
    return {**DEFAULTS, "head_dim": int(head_dim), "n_groups": int(n_groups), "dt_softplus": int(dt_softplus),
            "dt_min": float(dt_limit[0]), "dt_max": float(dt_limit[1])}


def emit_ssd_scan_node(b: GraphBuilder, inputs: list[str], name: str, outputs: list[str], **attributes) -> list[str]:
    """One SSDScan node (the TensorRT plugin; ONNX Runtime runs the local function).
    attributes: plugin_attributes' arguments."""
    if len(inputs) != len(INPUTS):
        raise ValueError(f"SSDScan takes {len(INPUTS)} inputs ({', '.join(INPUTS)}), got {len(inputs)}")
    return b.node(OP_TYPE, inputs, outputs, name=name, domain=DOMAIN, **plugin_attributes(**attributes))


def _attribute(b: GraphBuilder, attrs, key: str) -> str:
    """A node attribute as a tensor: a literal when inlining (attrs a dict), a reference inside the
    function (attrs "ref"). Ints as 1-D int64 [v] (shape pieces), floats as float32 scalars."""
    is_float = key in ("dt_min", "dt_max")
    if attrs != "ref":
        return b.small(float(attrs[key]), dtype="float32") if is_float else b.small([int(attrs[key])])
    kind, field = (onnx.AttributeProto.FLOAT, "value_float") if is_float else (onnx.AttributeProto.INT, "value_int")
    node = helper.make_node("Constant", [], [b.unique(f"{key}_value")], name=b.unique(f"{key}_attr"))
    node.attribute.append(helper.make_attribute_ref(field, kind, ref_attr_name=key))
    b.nodes.append(node)
    if is_float:
        return node.output[0]
    return b.node("Unsqueeze", [node.output[0], b.small([0])], name=f"{key}_1d")


def _scan_step_graph() -> onnx.GraphProto:
    """One token: h = exp(dt*A) h + (dt*x) B^T; y = h C. Per head: decay [b, H], dtx [b, H, P],
    B and C [b, H, N] (already repeated per head)."""
    s = GraphBuilder(constants_as_nodes=True, prefix="ssd_step/")
    decay = s.node("Unsqueeze", ["decay_t", s.small([2, 3])], name="decay_hp")                       # [b, H, 1, 1]
    inp = s.node("Mul", [s.node("Unsqueeze", ["dtx_t", s.small([3])], name="dtx_col"),
                         s.node("Unsqueeze", ["B_t", s.small([2])], name="B_row")], name="dtx_B")     # [b, H, P, N]
    s.node("Add", [s.node("Mul", [decay, "h"], name="decay_h"), inp], ["h_next"], name="h_update")
    s.node("ReduceSum", [s.node("Mul", ["h_next", s.node("Unsqueeze", ["C_t", s.small([2])], name="C_row")],
                                name="hC"), s.small([-1])], ["y_t"], name="y_t", keepdims=0)      # [b, H, P]
    ins = [helper.make_tensor_value_info(n, FLOAT, None) for n in ("h", "decay_t", "dtx_t", "B_t", "C_t")]
    outs = [helper.make_tensor_value_info("h_next", FLOAT, None), helper.make_tensor_value_info("y_t", FLOAT, None)]
    return helper.make_graph(s.nodes, "ssd_scan_step", ins, outs)


def clamped_dt(b: GraphBuilder, dt: str, dt_bias: str, attrs, p: str) -> str:
    """dt (float32) -> clamp(softplus(dt + dt_bias), dt_min, dt_max), the contract's time step."""
    v = b.node("Add", [dt, dt_bias], name=f"{p}/dt_plus_bias")
    if attrs == "ref":
        use = b.cast(b.node("Squeeze", [_attribute(b, "ref", "dt_softplus"), b.small([0])], name=f"{p}/softplus_0d"),
                     TensorProto.BOOL, name=f"{p}/softplus_flag")
        v = b.node("Where", [use, b.node("Softplus", [v], name=f"{p}/softplus"), v], name=f"{p}/dt_activated")
    elif attrs["dt_softplus"]:
        v = b.node("Softplus", [v], name=f"{p}/softplus")
    if attrs == "ref" or not attrs["dt_softplus"] or (attrs["dt_min"], attrs["dt_max"]) != (0.0, math.inf):
        v = b.node("Clip", [v, _attribute(b, attrs, "dt_min"), _attribute(b, attrs, "dt_max")], name=f"{p}/dt_limit")
    return v


def emit_ssd_body(b: GraphBuilder, inputs: list[str], outputs: list[str], prefix: str = "ssd", attrs="ref") -> list[str]:
    """Standard-op SSDScan. attrs: plugin_attributes(...) to inline, "ref" inside the function."""
    x, dt, A, B, C, D, dt_bias = inputs
    p = prefix
    f = {name: b.cast(t, FLOAT, name=f"{p}/{name}_f32") for name, t in (("x", x), ("dt", dt), ("B", B), ("C", C))}
    step = clamped_dt(b, f["dt"], dt_bias, attrs, p)                                                  # [b, L, H]
    heads = b.node("Shape", [A], name=f"{p}/heads")                                                   # [H]
    groups = _attribute(b, attrs, "n_groups")
    per_group = b.node("Div", [heads, groups], name=f"{p}/heads_per_group")
    x4 = b.node("Reshape", [f["x"], b.node("Concat", [b.small([0, 0, -1]), _attribute(b, attrs, "head_dim")],
                                           name=f"{p}/x_heads_shape", axis=0)], name=f"{p}/x_heads")  # [b, L, H, P]

    def per_head(t: str, n: str) -> str:
        """[b, L, G*N] -> [b, L, H, N]: head h reads group h // (H/G)."""
        g5 = b.node("Reshape", [t, b.node("Concat", [b.small([0, 0]), groups, b.small([1, -1])], name=f"{p}/{n}_g_shape",
                                          axis=0)], name=f"{p}/{n}_groups")                           # [b, L, G, 1, N]
        wide = b.node("Expand", [g5, b.node("Concat", [b.small([1, 1, 1]), per_group, b.small([1])],
                                            name=f"{p}/{n}_expand_shape", axis=0)], name=f"{p}/{n}_expand")
        return b.node("Reshape", [wide, b.node("Concat", [b.small([0, 0]), heads, b.small([-1])],
                                               name=f"{p}/{n}_h_shape", axis=0)], name=f"{p}/{n}_heads")

    B4, C4 = per_head(f["B"], "B"), per_head(f["C"], "C")
    decay = b.node("Exp", [b.node("Mul", [step, A], name=f"{p}/dtA")], name=f"{p}/decay")            # [b, L, H]
    dtx = b.node("Mul", [x4, b.node("Unsqueeze", [step, b.small([-1])], name=f"{p}/dt_col")], name=f"{p}/dt_x")
    x_shape, b_shape = b.node("Shape", [x4], name=f"{p}/x4_shape"), b.node("Shape", [B4], name=f"{p}/B4_shape")
    state_shape = b.node("Concat", [b.node("Slice", [x_shape, b.small([0]), b.small([1])], name=f"{p}/batch"),
                                    b.node("Slice", [x_shape, b.small([2]), b.small([4])], name=f"{p}/heads_dim"),
                                    b.node("Slice", [b_shape, b.small([3]), b.small([4])], name=f"{p}/state_dim")],
                         name=f"{p}/state_shape", axis=0)
    h0 = b.node("ConstantOfShape", [state_shape], name=f"{p}/h0", value=helper.make_tensor("zero", FLOAT, [1], [0.0]))
    final, ys = b.node("Scan", [h0, decay, dtx, B4, C4], 2, name=f"{p}/recurrence", body=_scan_step_graph(),
                       num_scan_inputs=4, scan_input_axes=[1, 1, 1, 1], scan_output_axes=[1])      # ys [b, L, H, P]
    skip = b.node("Mul", [x4, b.node("Unsqueeze", [D, b.small([-1])], name=f"{p}/D_col")], name=f"{p}/D_x")
    y = b.node("Reshape", [b.node("Add", [ys, skip], name=f"{p}/skip"), b.small([0, 0, -1])], name=f"{p}/y_flat")
    b.node("CastLike", [y, x], [outputs[0]], name=f"{p}/y_dtype")
    b.node("Identity", [final], [outputs[1]], name=f"{p}/final_state")
    return outputs


def ssd_scan_function() -> onnx.FunctionProto:
    """The model-local function mq_deploy.SSDScan (what ONNX Runtime and Polygraphy execute)."""
    b = GraphBuilder(constants_as_nodes=True)
    emit_ssd_body(b, list(INPUTS), list(OUTPUTS), prefix="body")
    function = helper.make_function(DOMAIN, OP_TYPE, list(INPUTS), list(OUTPUTS), b.nodes,
                                    [helper.make_opsetid("", OPSET)], attributes=list(REQUIRED))
    function.attribute_proto.extend(helper.make_attribute(k, v) for k, v in DEFAULTS.items())
    return function


__all__ = ["OP_TYPE", "INPUTS", "OUTPUTS", "FP32_INPUTS", "DEFAULTS", "REQUIRED", "plugin_attributes",
           "emit_ssd_scan_node", "emit_ssd_body", "ssd_scan_function", "clamped_dt"]
