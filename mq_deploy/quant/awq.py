"""AWQ-style activation-aware weight scaling (Lin et al., 2024) for 4-bit weight-only linears.

A linear's input channels are scaled, x -> x/s, and its weight's columns the other way, W -> W·diag(s):
the FP product is unchanged, but channels with large activations get finer 4-bit steps. As in AWQ,
s = a^α per channel (a: the channel's activation magnitude, normalized so that max·min = 1), with α
searched on a grid from 0 (no scaling) to 1 for the least output error. The error is measured
exactly from the second moment H = E[x xᵀ] of the linear's calibration inputs (the matrix GPTQ
uses, taken after the recipe's transforms): for ΔW = Q(W·diag(s))·diag(1/s) − W, the mean squared
output error is tr(ΔW H ΔWᵀ), so no activation is stored. a is the channel's RMS, √H_jj (AWQ uses
the mean |x|, which H does not hold). α = 0 is on the grid, so the calibration error never grows.

1/s is folded into what computes the input (quant/quantize.py applies it):
- in_proj: the RMSNorm weight (whose output feeds in_proj alone);
- x_proj: the online channel scale at its input (one Mul in the graph, as SmoothQuant's);
- out_proj: the gate (S-SiLU), when nothing rotates the out_proj input online; behind an online
  Hadamard a per-channel scale of the rotated input cannot be folded, and out_proj is left alone.
"""

from __future__ import annotations

import torch

from .quantizer import QuantSpec, quantize_tensor

GRID = 20                      # α in 0, 1/20, ..., 1 (AWQ's own grid)
SEARCH_ROWS = 1024             # output rows the search scores: each row is quantized on its own, so
                               # the error is a sum over rows, and evenly spaced rows estimate it
                               # (mamba-2.8b's out_proj: 2560 rows x 5120² per α otherwise)


def output_error(weight: torch.Tensor, hessian: torch.Tensor, s: torch.Tensor, spec: QuantSpec) -> float:
    """tr(ΔW H ΔWᵀ) for ΔW = Q(W·diag(s))·diag(1/s) − W, in the weight's dtype (float32 at least)."""
    dtype = torch.promote_types(weight.dtype, torch.float32)
    w, s = weight.to(dtype), s.to(dtype)
    q = quantize_tensor(w * s, spec).dequantize(dtype) / s
    delta = q - w
    return float(((delta @ hessian.to(dtype)) * delta).sum())


def channel_scales(hessian: torch.Tensor, alpha: float) -> torch.Tensor:
    """s = a^α with a = √diag(H) (channels no input reached take the smallest a seen), normalized
    to max·min = 1."""
    a = torch.diagonal(hessian).double().clamp(min=0).sqrt()
    live = a[a > 0]
    if live.numel() == 0:
        return torch.ones_like(a)
    s = a.clamp(min=float(live.min())) ** alpha
    return s / (s.max() * s.min()).sqrt()


def search_scales(weight: torch.Tensor, hessian: torch.Tensor, spec: QuantSpec,
                  grid: int = GRID) -> tuple[torch.Tensor, float, list[float]]:
    """(s, α, the error at every α of the grid): the grid point of least output error (the first,
    i.e. the smallest α, on a tie)."""
    if weight.shape[0] > SEARCH_ROWS:
        weight = weight[torch.linspace(0, weight.shape[0] - 1, SEARCH_ROWS).round().long()]
    errors = [output_error(weight, hessian, channel_scales(hessian, k / grid), spec) for k in range(grid + 1)]
    best = min(range(grid + 1), key=lambda k: errors[k])
    return channel_scales(hessian, best / grid), best / grid, errors
