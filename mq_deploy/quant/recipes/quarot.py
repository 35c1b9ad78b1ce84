"""QuaRot-style (Ashkboos et al. 2024) rotations with plain random Hadamards, no KLT, no smoothing:
R1 on the residual stream (γ folded first), an online Hadamard before out_proj (R2), and a
Hadamard on each SSM path's dt bottleneck (R5; a Mamba-2 mixer has none)."""

from __future__ import annotations

from ..transforms import (fold_rmsnorm_weights, online_hadamard_before_out_proj, random_signs,
                          rotate_dt_bottleneck, rotate_residual_stream, signed_hadamard_matrix)

RANDOM_SIGNS = True        # the Hadamards' signs come from config.seed


def transform(model, calib, config, progress=True):
    cfg = model.config
    fold_rmsnorm_weights(model, untie_head=config.quantizes_lm_head(cfg.hidden_size))   # a tied head stays tied
    for i, layer in enumerate(model.backbone.layers):
        online_hadamard_before_out_proj(layer.mixer, random_signs(cfg.intermediate_size, seed=config.seed + 1000 + i))
        for p, suffix in enumerate(layer.mixer.PATHS if "dt_proj" in layer.mixer.LINEAR_INPUTS else ()):
            signs = random_signs(cfg.time_step_rank, seed=config.seed + 2000 + 1000 * p + i)
            rotate_dt_bottleneck(layer.mixer, signed_hadamard_matrix(signs), suffix)
    rotate_residual_stream(model, signed_hadamard_matrix(random_signs(cfg.hidden_size, seed=config.seed)))
    return {}
