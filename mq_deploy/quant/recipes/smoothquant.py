"""SmoothQuant (Xiao et al. 2023) as published, on every linear's input: each input is divided per
channel by s = max|x|^α / max|W|^(1-α) and the weight multiplied by s, so activation outliers
migrate into the weights. Where an op before the linear can absorb 1/s it does; where none can, the
division is an online multiply, as ModelOpt does it (its pre_quant_scale):

- in_proj: folded into the RMSNorm γ;
- x_proj: its input comes out of a SiLU, so an online channel scale (one Mul in the graph, which
  TensorRT fuses into the following quantize); each SSM path's own (a Vision Mamba's x_proj_b);
- dt_proj: folded into x_proj's dt rows (the dt bottleneck smoothing), each path's own;
- out_proj: folded through the gate (the S-SiLU form of the gate, exact), or a Mamba-2 mixer's
  gated-norm weight (it has no x_proj or dt_proj).

All scales come from one pass over the untransformed FP model (each smoothing leaves the other
linears' inputs as they were). α = 1 (all of the range migrates to the weights) is ModelOpt's
default; on the demo model it was the best of 0.5, 0.75 and 1 on both held-out texts and matched
ModelOpt's INT8 SmoothQuant to the hundredth of a percent (docs/quantization.md)."""

from __future__ import annotations

from ..transforms import (smooth_dt_bottleneck, smooth_norm_into_in_proj, smooth_out_proj_input,
                          smooth_x_proj_input_online, smoothquant_scales)
from .common import gather, mixer_point

ALPHA = 1.0
SHARED_POINTS = ("in_proj_input", "out_proj_input")
PATH_POINTS = ("x_proj_input", "dt_proj_input")          # one per SSM path


def transform(model, calib, config, progress=True):
    layers = model.backbone.layers
    requests = {}
    for i, layer in enumerate(layers):
        points = SHARED_POINTS + tuple(p + suffix for p in _path_points(layer.mixer) for suffix in layer.mixer.PATHS)
        requests.update({mixer_point(i, p): ["channel_absmax"] for p in points})
    stats = gather(model, calib, config, requests, progress)

    def scales(i, point, linear):
        act = stats[mixer_point(i, point)]["channel_absmax"].value()
        return smoothquant_scales(act, linear.weight.abs().amax(dim=0), alpha=ALPHA)

    for i, layer in enumerate(layers):
        mixer = layer.mixer
        s_in, s_out = scales(i, "in_proj_input", mixer.in_proj), scales(i, "out_proj_input", mixer.out_proj)
        for suffix in mixer.PATHS if _path_points(mixer) else ():
            s_x = scales(i, "x_proj_input" + suffix, getattr(mixer, "x_proj" + suffix))
            s_dt = scales(i, "dt_proj_input" + suffix, getattr(mixer, "dt_proj" + suffix))
            smooth_x_proj_input_online(mixer, s_x, suffix)
            smooth_dt_bottleneck(mixer, s_dt, suffix)
        smooth_norm_into_in_proj(layer, s_in)
        smooth_out_proj_input(mixer, s_out)
    return {}


def _path_points(mixer) -> tuple[str, ...]:
    """The per-path points this mixer has (none for a Mamba-2 mixer: no x_proj, no dt_proj)."""
    return tuple(p for p in PATH_POINTS if p in mixer.LINEAR_INPUTS.values())
