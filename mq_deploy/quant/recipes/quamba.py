"""Quamba (Chiang et al. 2024): static per-tensor INT8 with a percentile clip of the SSM input x
(here: the x_proj input, the same tensor; each SSM path's) and an online Hadamard before out_proj."""

from __future__ import annotations

from ..transforms import online_hadamard_before_out_proj, random_signs

SCAN_INPUT_PERCENTILE = 99.999

RANDOM_SIGNS = True        # the Hadamards' signs come from config.seed


def transform(model, calib, config, progress=True):
    for i, layer in enumerate(model.backbone.layers):
        online_hadamard_before_out_proj(layer.mixer, random_signs(model.config.intermediate_size,
                                                                  seed=config.seed + 1000 + i))
    return {"x_proj_input" + suffix: SCAN_INPUT_PERCENTILE for suffix in model.backbone.layers[0].mixer.PATHS}
