"""The scan as the MambaQuant paper's fake-quant evaluation runs it: the output contraction
y_t = <h_t, C_t> with both operands quantized per time step (8-bit asymmetric, dynamic: one range
per token position over batch, channels and states for h, over batch and states for C).

Not deployable: a fused scan kernel never materializes h (docs/decisions.md). It exists so the
"paper" mode reproduces the paper's setting next to the deployable one.
"""

from __future__ import annotations

import torch

from ..ops.selective_scan import _accumulation_dtype, _check_shapes, _discretize, _finish
from .quantizer import QuantSpec, fake_quantize, scale_and_zero_point

HC_SPEC = QuantSpec(bits=8, symmetric=False)


def _per_step_fake_quant(x: torch.Tensor) -> torch.Tensor:
    scale, zero_point = scale_and_zero_point(x.min(), x.max(), HC_SPEC)
    return fake_quantize(x, scale, zero_point, HC_SPEC)


def selective_scan_quantized_hc(x, delta, A, B, C, D=None, delta_bias=None, z=None, gate_scale=None,
                                delta_softplus=True, initial_state=None, reverse=False,
                                return_final_state=False):
    """selective_scan_ref with the h·C contraction fake-quantized per time step."""
    _check_shapes(x, delta, A, B, C, D, delta_bias, z, gate_scale, initial_state)
    acc = _accumulation_dtype(x)
    batch, length, dim = x.shape
    A, B, C = A.to(acc), B.to(acc), C.to(acc)
    dt, dtx = _discretize(x, delta, A, B, delta_bias, delta_softplus, acc)
    h = (initial_state.to(acc) if initial_state is not None
         else x.new_zeros(batch, dim, A.shape[1], dtype=acc))
    ys = [None] * length
    for t in (range(length - 1, -1, -1) if reverse else range(length)):
        h = torch.exp(dt[:, t, :, None] * A) * h + dtx[:, t, :, None] * B[:, t, None, :]
        ys[t] = (_per_step_fake_quant(h) @ _per_step_fake_quant(C[:, t]).unsqueeze(-1)).squeeze(-1)
    y = torch.stack(ys, dim=1) if length else x.new_zeros(batch, 0, dim, dtype=acc)
    y = _finish(y, x, D, z, gate_scale, acc)
    return (y, h) if return_final_state else y
