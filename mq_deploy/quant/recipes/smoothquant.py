"""SmoothQuant (Xiao et al. 2023) as it applies to Mamba: migrate activation outliers of the
in_proj input into in_proj's weights, folding 1/s into the preceding RMSNorm's γ. α = 0.5."""

from __future__ import annotations

import torch

from ..transforms import smoothquant_scales
from .common import gather, mixer_point

ALPHA = 0.5


@torch.no_grad()
def smooth_norm_into_in_proj(layer, s: torch.Tensor) -> None:
    """norm γ ← γ / s, in_proj W ← W·diag(s): in_proj sees x/s, the product is unchanged."""
    layer.norm.weight.div_(s.to(layer.norm.weight.dtype))
    layer.mixer.in_proj.weight.mul_(s.to(layer.mixer.in_proj.weight.dtype))


def transform(model, calib, config, progress=True):
    layers = model.backbone.layers
    stats = gather(model, calib, config, {mixer_point(i, "in_proj_input"): ["channel_absmax"]
                                          for i in range(len(layers))}, progress)
    for i, layer in enumerate(layers):
        act = stats[mixer_point(i, "in_proj_input")]["channel_absmax"].value()
        s = smoothquant_scales(act, layer.mixer.in_proj.weight.abs().amax(dim=0), alpha=ALPHA)
        smooth_norm_into_in_proj(layer, s)
    return {}
