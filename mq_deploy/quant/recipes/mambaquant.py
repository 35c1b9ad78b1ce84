"""MambaQuant (Xu et al., ICLR 2025): KLT-enhanced rotation + smooth-fused rotation, as specified in
DESIGN.md §3.4 and without the official code's bugs (reference notes §12):

- statistics come from the untransformed FP model with quantization off, in one pass;
- R1 = K·H on the residual stream after folding every RMSNorm γ; K from the covariance of the
  γ-free normalized residual (the tensor R1 actually rotates), pooled over all layers;
- S2 + R2: S-SiLU smoothing of the out_proj input (α = 0.5), then an online Hadamard;
- S5 then R5 = K·H on the dt bottleneck, per layer, in the correct orientation (dt_proj's input
  becomes t·K·H), with K from that layer's own covariance adjusted for S5;
- S7: smoothing between in_proj's x rows and the depthwise conv;
- every fold in float64.
"""

from __future__ import annotations

import torch

from ..transforms import (fold_rmsnorm_weights, klt_hadamard_rotation, online_hadamard_before_out_proj,
                          random_signs, rotate_dt_bottleneck, rotate_residual_stream, smooth_conv_input,
                          smooth_dt_bottleneck, smooth_gate_s_silu, smoothquant_scales)
from .common import gather, mixer_point

ALPHA = 0.5


def _statistics(model, calib, config, progress):
    requests = {}
    for i in range(len(model.backbone.layers)):
        requests[mixer_point(i, "in_proj_input")] = ["covariance"]
        requests[mixer_point(i, "conv_input")] = ["channel_absmax"]
        requests[mixer_point(i, "dt_proj_input")] = ["channel_absmax", "covariance"]
        requests[mixer_point(i, "out_proj_input")] = ["channel_absmax"]
    return gather(model, calib, config, requests, progress)


def _scaled_covariance(cov: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Covariance of x / s given the covariance of x."""
    return cov / torch.outer(s, s)


@torch.no_grad()
def transform(model, calib, config, progress=True):
    cfg = model.config
    layers = model.backbone.layers
    stats = _statistics(model, calib, config, progress)

    # R1's statistic: the in_proj input with γ divided out is what the folded model rotates
    residual_cov = sum(_scaled_covariance(stats[mixer_point(i, "in_proj_input")]["covariance"].covariance(),
                                          layer.norm.weight.double())
                       for i, layer in enumerate(layers)) / len(layers)
    fold_rmsnorm_weights(model, untie_head=config.quantizes_lm_head(cfg.hidden_size))   # a tied head stays tied

    for i, layer in enumerate(layers):
        mixer = layer.mixer
        # S2 + R2: smooth the out_proj input through the gate, then rotate it online
        s2 = smoothquant_scales(stats[mixer_point(i, "out_proj_input")]["channel_absmax"].value(),
                                mixer.out_proj.weight.abs().amax(dim=0), alpha=ALPHA)
        smooth_gate_s_silu(mixer, s2)
        online_hadamard_before_out_proj(mixer, random_signs(cfg.intermediate_size, seed=config.seed + 1000 + i))
        # S5 then R5 on the dt bottleneck
        dt_stats = stats[mixer_point(i, "dt_proj_input")]
        s5 = smoothquant_scales(dt_stats["channel_absmax"].value(), mixer.dt_proj.weight.abs().amax(dim=0),
                                alpha=ALPHA)
        smooth_dt_bottleneck(mixer, s5)
        r5 = klt_hadamard_rotation(_scaled_covariance(dt_stats["covariance"].covariance(), s5),
                                   seed=config.seed + 2000 + i)
        rotate_dt_bottleneck(mixer, r5)
        # S7 between in_proj's x rows and the depthwise conv (max over the kernel taps)
        s7 = smoothquant_scales(stats[mixer_point(i, "conv_input")]["channel_absmax"].value(),
                                mixer.conv1d.weight.abs().flatten(1).amax(dim=1), alpha=ALPHA)
        smooth_conv_input(mixer, s7)

    rotate_residual_stream(model, klt_hadamard_rotation(residual_cov, seed=config.seed))
    return {}
