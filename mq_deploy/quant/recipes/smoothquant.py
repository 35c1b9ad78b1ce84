"""SmoothQuant (Xiao et al. 2023) as published, on every linear's input: each input is divided per
channel by s = max|x|^α / max|W|^(1-α) and the weight multiplied by s, so activation outliers
migrate into the weights. Where an op before the linear can absorb 1/s it does; where none can, the
division is an online multiply, as ModelOpt does it (its pre_quant_scale):

- in_proj: folded into the RMSNorm γ;
- x_proj: its input comes out of a SiLU, so an online channel scale (one Mul in the graph, which
  TensorRT fuses into the following quantize);
- dt_proj: folded into x_proj's dt rows (the dt bottleneck smoothing);
- out_proj: folded through the gate (the S-SiLU form of the gate, exact).

All scales come from one pass over the untransformed FP model (each smoothing leaves the other
linears' inputs as they were). α = 1 (all of the range migrates to the weights) is ModelOpt's
default; on the demo model it was the best of 0.5, 0.75 and 1 on both held-out texts and matched
ModelOpt's INT8 SmoothQuant to the hundredth of a percent (docs/quantization.md)."""

from __future__ import annotations

from ..transforms import (smooth_dt_bottleneck, smooth_gate_s_silu, smooth_norm_into_in_proj,
                          smooth_x_proj_input_online, smoothquant_scales)
from .common import gather, mixer_point

ALPHA = 1.0
POINTS = ("in_proj_input", "x_proj_input", "dt_proj_input", "out_proj_input")


def transform(model, calib, config, progress=True):
    layers = model.backbone.layers
    stats = gather(model, calib, config, {mixer_point(i, p): ["channel_absmax"]
                                          for i in range(len(layers)) for p in POINTS}, progress)

    def scales(i, point, linear):
        act = stats[mixer_point(i, point)]["channel_absmax"].value()
        return smoothquant_scales(act, linear.weight.abs().amax(dim=0), alpha=ALPHA)

    for i, layer in enumerate(layers):
        mixer = layer.mixer
        s_in, s_x = scales(i, "in_proj_input", mixer.in_proj), scales(i, "x_proj_input", mixer.x_proj)
        s_dt, s_out = scales(i, "dt_proj_input", mixer.dt_proj), scales(i, "out_proj_input", mixer.out_proj)
        smooth_norm_into_in_proj(layer, s_in)
        smooth_x_proj_input_online(mixer, s_x)
        smooth_dt_bottleneck(mixer, s_dt)
        smooth_gate_s_silu(mixer, s_out)
    return {}
