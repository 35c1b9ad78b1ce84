"""Linear layers as TensorRT explicit quantization wants them (docs/export.md, "Quantization"):

    x ─ QuantizeLinear(s_x, 0) ─ DequantizeLinear(s_x, 0) ─┐
                                                          MatMul ─ (+ bias)
    W_int8 (K, N) ─ DequantizeLinear(s_w [N], 0, axis=1) ─┘

4-bit weights (W4A16, weight-only) are INT4 codes in a blocked DequantizeLinear (opset 21), one
scale per group of K. Weight codes come from `quantize_tensor`, the function the fake-quant torch model uses, so they are
the same integers. Scales are stored in the graph's float type (a DQ outputs its scale's type) and
zero points are INT8 zeros. An unquantized linear is a MatMul with an FP (K, N) initializer.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import torch

from ..quant.quantizer import QuantSpec, quantize_tensor
from .onnx_builder import NUMPY_OF, GraphBuilder


def _scale_array(values, float_type: int, where: str) -> np.ndarray:
    scale = np.asarray(values, dtype=np.float64).astype(NUMPY_OF[float_type])
    if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
        raise ValueError(f"{where}: a quantization scale is zero or not finite in "
                         f"{np.dtype(NUMPY_OF[float_type]).name} ({np.min(values):.3g} .. {np.max(values):.3g})")
    return scale


# An activation QuantizeLinear is named "<linear>.act_quantize" (export/aligned_codes reads it back).
ACT_QUANTIZE_SUFFIX = ".act_quantize"


def linear_of_activation_quantize(node_name: str) -> str | None:
    """'backbone.layers.0.mixer.in_proj.act_quantize' -> 'backbone.layers.0.mixer.in_proj'."""
    return node_name[:-len(ACT_QUANTIZE_SUFFIX)] if node_name.endswith(ACT_QUANTIZE_SUFFIX) else None


def activation_scale_consts(b: GraphBuilder, scale: float, float_type: int, name: str) -> tuple[str, str]:
    """(scale, zero point) of a static per-tensor symmetric INT8 activation quantizer: a scalar in the
    graph's float type and an INT8 zero."""
    return (b.const(_scale_array(scale, float_type, name), f"{name}.act_scale"),
            b.const(np.zeros((), np.int8), f"{name}.act_zero_point"))


def emit_activation_dequantize(b: GraphBuilder, codes: str, scale: str, zero_point: str, name: str) -> str:
    return b.node("DequantizeLinear", [codes, scale, zero_point], name=f"{name}.act_dequantize")


def emit_activation_qdq(b: GraphBuilder, x: str, scale: float, float_type: int, name: str) -> str:
    """Static per-tensor symmetric INT8 Q -> DQ (scale a scalar in the graph's float type)."""
    s, zp = activation_scale_consts(b, scale, float_type, name)
    q = b.node("QuantizeLinear", [x, s, zp], name=f"{name}{ACT_QUANTIZE_SUFFIX}")
    return emit_activation_dequantize(b, q, s, zp, name)


def weight_codes(weight: torch.Tensor, spec: QuantSpec) -> tuple[np.ndarray, np.ndarray]:
    """(codes (K, N) int8 values, scale) of an nn.Linear weight (N, K): 8 bits per output channel
    (scale [N]) or 4 bits per group of `group_size` inputs (scale (K / group_size, N))."""
    per_channel_int8 = spec.bits == 8 and spec.granularity == "channel" and spec.axis == 0
    grouped_int4 = spec.bits == 4 and spec.granularity == "group"
    if not spec.symmetric or not (per_channel_int8 or grouped_int4):
        raise ValueError(f"only symmetric 8-bit per-output-channel or 4-bit per-group weights are exportable, got {spec}")
    qt = quantize_tensor(weight, spec)
    n, k = weight.shape
    codes = qt.codes.reshape(n, k).numpy().astype(np.int8).T.copy()
    scale = qt.scale.reshape(n, -1).numpy().T.copy()            # [1 or K/g, N]
    return codes, (scale.reshape(-1) if per_channel_int8 else scale)


def emit_weight(b: GraphBuilder, weight: torch.Tensor, float_type: int, name: str,
                spec: QuantSpec | None = None) -> str:
    """The (K, N) right-hand side of a MatMul: an FP initializer, or integer codes -> DequantizeLinear.
    INT8: per output channel (axis 1, scale [N]). INT4 (opset 21): blocked along K (axis 0,
    block_size = the group, scale (K / group, N)), the layout TensorRT's weight-only INT4 GEMMs take."""
    if spec is None:
        return b.const(weight.detach().double().numpy().T.astype(NUMPY_OF[float_type]), f"{name}.weight")
    codes, scale = weight_codes(weight, spec)
    s = b.const(_scale_array(scale, float_type, name), f"{name}.weight_scale")
    if spec.bits == 8:
        w = b.const(codes, f"{name}.weight_int8")
        zp = b.const(np.zeros(scale.shape, np.int8), f"{name}.weight_zero_point")
        return b.node("DequantizeLinear", [w, s, zp], name=f"{name}.weight_dequantize", axis=1)
    w = b.const(codes.astype(ml_dtypes.int4), f"{name}.weight_int4")
    zp = b.const(np.zeros(scale.shape, ml_dtypes.int4), f"{name}.weight_zero_point")
    return b.node("DequantizeLinear", [w, s, zp], name=f"{name}.weight_dequantize", axis=0,
                  block_size=spec.group_size)


def emit_conv_weight(b: GraphBuilder, weight: torch.Tensor, float_type: int, name: str, spec: QuantSpec) -> str:
    """A depthwise Conv weight (D, 1, K) as INT8 codes -> DequantizeLinear, scale [D] on axis 0."""
    if spec.bits != 8 or not spec.symmetric or spec.granularity != "channel" or spec.axis != 0:
        raise ValueError(f"only symmetric 8-bit per-channel conv weights are exportable, got {spec}")
    qt = quantize_tensor(weight, spec)
    scale = qt.scale.reshape(-1).numpy()
    w = b.const(qt.codes.numpy().astype(np.int8), f"{name}.weight_int8")
    s = b.const(_scale_array(scale, float_type, name), f"{name}.weight_scale")
    zp = b.const(np.zeros(scale.shape, np.int8), f"{name}.weight_zero_point")
    return b.node("DequantizeLinear", [w, s, zp], name=f"{name}.weight_dequantize", axis=0)


def emit_linear(b: GraphBuilder, x: str, linear: torch.nn.Linear, float_type: int, name: str,
                spec: QuantSpec | None = None, act_scale: float | None = None, weight: str | None = None,
                use_bias: bool = True) -> str:
    """x [.., K] -> x W^T (+ bias). `weight` overrides the emitted weight (a tied head); dt_proj
    passes use_bias=False (its bias is the scan's delta_bias)."""
    if act_scale is not None:
        x = emit_activation_qdq(b, x, act_scale, float_type, name)
    w = weight or emit_weight(b, linear.weight, float_type, name, spec)
    y = b.node("MatMul", [x, w], name=f"{name}.matmul")
    if use_bias and linear.bias is not None:
        y = b.node("Add", [y, b.const(linear.bias.detach().double().numpy().astype(NUMPY_OF[float_type]),
                                      f"{name}.bias")], name=f"{name}.bias_add")
    return y

