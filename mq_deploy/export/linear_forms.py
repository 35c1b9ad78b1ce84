"""What each linear becomes in each graph, so that every quantized MatMul TensorRT sees can run
as a fused INT8 or INT4 GEMM (docs/export.md, "What each linear becomes").

The artifact already decided per layer what is quantized (QuantConfig.weight_spec: at 4 bits in
deploy mode, only K that take TensorRT's INT4 blocks; dt_proj stays FP). Per graph:
- prefill (M = batch x seqlen rows): W8A8 linears are INT8 GEMMs (Q/DQ on the activation, INT8
  weights); W4A16 linears INT4 weight-only GEMMs;
- decode (M = batch rows, a GEMV): an INT8 x INT8 GEMV gains nothing over FP16 at that size and
  TensorRT has no INT8 weight-only GEMM, so a W8A8 linear reads the same INT8 weights through a
  DequantizeLinear with FP16 activations (TensorRT folds the DequantizeLinear into FP16 weights at
  build time: an FP16 GEMV); W4A16 linears stay INT4 weight-only (what those kernels are for).
The decode graph of a W8A8 export therefore does not quantize the linears' inputs: it computes
the fake-quant model with those activation quantizers off (quant/decode_form.py gives that model).
"""

from __future__ import annotations

from ..deploy.contract import GRAPH_KINDS
from ..quant.quantizer import QuantSpec

FLOAT = "float"                                    # not quantized: an FP weight, FP activations
INT8_GEMM = "int8"                                 # INT8 activations x INT8 weights
INT4_WEIGHT_ONLY = "int4-weight-only"              # FP activations x INT4 blocked weights
INT8_WEIGHTS_FP_GEMV = "int8-weights-fp-gemv"      # FP activations x INT8 weights dequantized

GRAPHS = GRAPH_KINDS


def linear_form(spec: QuantSpec | None, act_scale: float | None, graph: str) -> str:
    """The form of one linear in `graph` ('prefill' or 'decode'), from its weight spec and the
    calibrated scale of its input (None: activations not quantized)."""
    if graph not in GRAPHS:
        raise ValueError(f"unknown graph {graph!r}")
    if spec is None:
        return FLOAT
    if spec.bits == 4:
        return INT4_WEIGHT_ONLY
    if act_scale is None:
        return INT8_WEIGHTS_FP_GEMV             # W8A16: INT8 storage, an FP16 GEMM in TensorRT
    return INT8_GEMM if graph == "prefill" else INT8_WEIGHTS_FP_GEMV


def quantizes_input(form: str) -> bool:
    """Whether the graph puts a Q/DQ on the linear's input."""
    return form == INT8_GEMM
