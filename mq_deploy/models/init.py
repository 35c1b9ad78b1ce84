"""Random initialisation of a MambaLM as mamba_ssm does it (for training from scratch and for
realistic random test models): S4D-real A, D = 1, dt in [dt_min, dt_max] log-uniform through the
dt_proj bias, out_proj scaled down by sqrt(n_layer)."""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from .mamba import MambaLM


@torch.no_grad()
def init_mamba_weights(model: MambaLM, seed: int = 0, dt_min: float = 1e-3, dt_max: float = 1e-1) -> MambaLM:
    """Initialize `model`'s Mamba layers (and a language model's embedding) in place; every SSM path
    of a bidirectional mixer alike. A Vision Mamba's patch/position embeddings and head are its trainer's."""
    g = torch.Generator().manual_seed(seed)
    cfg = model.config
    if isinstance(model, MambaLM):
        nn.init.normal_(model.backbone.embeddings.weight, std=0.02, generator=g)
    for layer in model.backbone.layers:
        mixer = layer.mixer
        paths = mixer.PATHS
        for linear in (mixer.in_proj, *(getattr(mixer, "x_proj" + s) for s in paths), mixer.out_proj):
            bound = 1 / math.sqrt(linear.in_features)
            nn.init.uniform_(linear.weight, -bound, bound, generator=g)
            if linear.bias is not None:
                nn.init.zeros_(linear.bias)
        mixer.out_proj.weight /= math.sqrt(cfg.num_hidden_layers)
        for suffix in paths:
            conv, dt_proj = getattr(mixer, "conv1d" + suffix), getattr(mixer, "dt_proj" + suffix)
            bound = 1 / math.sqrt(cfg.conv_kernel)
            nn.init.uniform_(conv.weight, -bound, bound, generator=g)
            if conv.bias is not None:
                nn.init.uniform_(conv.bias, -bound, bound, generator=g)
            std = cfg.time_step_rank ** -0.5
            nn.init.uniform_(dt_proj.weight, -std, std, generator=g)
            dt = torch.exp(torch.rand(cfg.intermediate_size, generator=g) * (math.log(dt_max) - math.log(dt_min))
                           + math.log(dt_min)).clamp(min=1e-4)
            dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))   # inverse softplus
            getattr(mixer, f"A{suffix}_log").copy_(torch.log(torch.arange(1, cfg.state_size + 1, dtype=torch.float32))
                                                   .repeat(cfg.intermediate_size, 1))
            getattr(mixer, "D" + suffix).fill_(1.0)
        layer.norm.weight.fill_(1.0)
    model.backbone.norm_f.weight.fill_(1.0)
    return model


@torch.no_grad()
def init_mamba2_weights(model, seed: int = 0, dt_min: float = 1e-3, dt_max: float = 1e-1,
                        a_range: tuple[float, float] = (1.0, 16.0)):
    """Initialize a Mamba2LM in place as mamba_ssm's Mamba2 does: A per head uniform in `a_range`
    (A_log its log), dt log-uniform in [dt_min, dt_max] through dt_bias (inverse softplus), D = 1,
    norms 1, linears uniform ±1/sqrt(fan_in) with out_proj scaled down by sqrt(n_layer)."""
    g = torch.Generator().manual_seed(seed)
    cfg = model.config
    nn.init.normal_(model.backbone.embeddings.weight, std=0.02, generator=g)
    for layer in model.backbone.layers:
        mixer = layer.mixer
        for linear in (mixer.in_proj, mixer.out_proj):
            bound = 1 / math.sqrt(linear.in_features)
            nn.init.uniform_(linear.weight, -bound, bound, generator=g)
            if linear.bias is not None:
                nn.init.zeros_(linear.bias)
        mixer.out_proj.weight /= math.sqrt(cfg.num_hidden_layers)
        bound = 1 / math.sqrt(cfg.conv_kernel)
        nn.init.uniform_(mixer.conv1d.weight, -bound, bound, generator=g)
        if mixer.conv1d.bias is not None:
            nn.init.uniform_(mixer.conv1d.bias, -bound, bound, generator=g)
        dt = torch.exp(torch.rand(cfg.num_heads, generator=g) * (math.log(dt_max) - math.log(dt_min))
                       + math.log(dt_min)).clamp(min=1e-4)
        mixer.dt_bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        mixer.A_log.copy_(torch.log(torch.empty(cfg.num_heads).uniform_(*a_range, generator=g)))
        mixer.D.fill_(1.0)
        if mixer.norm is not None:
            mixer.norm.weight.fill_(1.0)
        layer.norm.weight.fill_(1.0)
    model.backbone.norm_f.weight.fill_(1.0)
    return model
