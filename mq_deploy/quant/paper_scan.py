"""The scan as the MambaQuant paper's fake-quant evaluation runs it: the output contraction
y_t = <h_t, C_t> with both operands quantized per time step (8-bit asymmetric, dynamic: one range
per token position over batch, channels and states for h, over batch and states for C).

Not deployable: a fused scan kernel never materializes h (docs/quantization.md). It exists so the
"paper" mode reproduces the paper's setting next to the deployable one.
"""

from __future__ import annotations

import functools

import torch

from ..ops.selective_scan import selective_scan_ref
from .quantizer import QuantSpec, fake_quantize, scale_and_zero_point

HC_SPEC = QuantSpec(bits=8, symmetric=False)


def _per_step_fake_quant(x: torch.Tensor) -> torch.Tensor:
    scale, zero_point = scale_and_zero_point(x.min(), x.max(), HC_SPEC)
    return fake_quantize(x, scale, zero_point, HC_SPEC)


def _quantized_contraction(h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """<h_t, C_t> with h_t [b, D, N] and C_t [b, N] each fake-quantized over the whole time step."""
    return (_per_step_fake_quant(h) @ _per_step_fake_quant(c).unsqueeze(-1)).squeeze(-1)


selective_scan_quantized_hc = functools.partial(selective_scan_ref, output_fn=_quantized_contraction)
