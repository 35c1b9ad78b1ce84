"""SmoothQuant scales for the S2 / S5 / S7 smoothings (MambaQuant §5).

    s_j = max_t|X_tj|^α / max_i|W_ij|^(1-α),   clamped to s_j >= min_scale

Dividing activation channel j by s_j and multiplying the weights that read it by s_j moves
quantization difficulty from the activations to the weights; α = 0.5 balances the two maxima.
"""

from __future__ import annotations

import torch

__all__ = ["smoothquant_scales", "weight_input_absmax", "conv_channel_absmax"]


def smoothquant_scales(act_absmax: torch.Tensor, weight_absmax: torch.Tensor, alpha: float = 0.5,
                       min_scale: float = 1e-2) -> torch.Tensor:
    """Per-channel smoothing scales s [channels] (float64) from the activation and weight maxima.

    A channel whose activation or weight maximum is zero has nothing to balance and gets s = 1
    (instead of 0 or inf, which would make the fold divide by zero).
    """
    if act_absmax.dim() != 1 or act_absmax.shape != weight_absmax.shape:
        raise ValueError(f"smoothquant_scales: expected two 1-D maxima of equal length, got shapes "
                         f"{tuple(act_absmax.shape)} and {tuple(weight_absmax.shape)}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"smoothquant_scales: alpha must be in [0, 1], got {alpha}")
    if not min_scale > 0:
        raise ValueError(f"smoothquant_scales: min_scale must be > 0, got {min_scale}")
    act = act_absmax.detach().to(torch.float64)
    weight = weight_absmax.detach().to(device=act.device, dtype=torch.float64)
    for name, value in (("activation", act), ("weight", weight)):
        if not (torch.isfinite(value).all() and (value >= 0).all()):
            raise ValueError(f"smoothquant_scales: {name} maxima must be finite and >= 0")
    balanced = act.pow(alpha) / weight.pow(1.0 - alpha)
    s = torch.where((act == 0) | (weight == 0), torch.ones_like(act), balanced)
    return s.clamp_min(min_scale)


def weight_input_absmax(weight: torch.Tensor) -> torch.Tensor:
    """max_i |W_ij| for every input column j of a Linear weight [out, in] (or a block of its rows,
    e.g. `mixer.out_proj.weight`, `mixer.dt_proj.weight`), in float64."""
    if weight.dim() != 2:
        raise ValueError(f"weight_input_absmax: expected a [out, in] weight, got shape {tuple(weight.shape)}")
    return weight.detach().to(torch.float64).abs().amax(dim=0)


def conv_channel_absmax(conv_weight: torch.Tensor) -> torch.Tensor:
    """max over the kernel taps of |w[c, 0, :]| for a depthwise conv weight [channels, 1, kernel]:
    the weight side of S7, in float64."""
    if conv_weight.dim() != 3 or conv_weight.shape[1] != 1:
        raise ValueError(f"conv_channel_absmax: expected a depthwise weight [channels, 1, kernel], got "
                         f"shape {tuple(conv_weight.shape)}")
    return conv_weight.detach().to(torch.float64).abs().amax(dim=(1, 2))
