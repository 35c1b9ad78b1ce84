"""Exact floating-point transforms of MambaQuant: random Hadamard matrices of Mamba sizes, the KLT·H
rotation, RMSNorm-γ folding, the R1 / R2 / R5 rotations and the S2 / S5 / S7 smoothings.

Each fold changes a MambaLM's weights in place, in float64 arithmetic, and leaves its logits
unchanged (tests/test_quant_transforms.py).
"""

from .fold import (ChannelScale, OnlineMatrix, fold_rmsnorm_weights, online_hadamard_before_out_proj, rotate_dt_bottleneck,
                   rotate_residual_stream, smooth_conv_input, smooth_dt_bottleneck, smooth_gate_s_silu,
                   smooth_gated_norm_into_out_proj, smooth_norm_into_in_proj, smooth_out_proj_input,
                   smooth_x_proj_input_online)
from .hadamard import (BASE_ORDERS, HadamardRotation, hadamard_factors, hadamard_matrix, load_hadamard_bases,
                       random_signs, signed_hadamard_matrix)
from .klt import klt_basis, klt_hadamard_rotation
from .smoothing import conv_channel_absmax, smoothquant_scales, weight_input_absmax

__all__ = [
    "BASE_ORDERS", "ChannelScale", "HadamardRotation", "OnlineMatrix", "hadamard_factors", "hadamard_matrix", "load_hadamard_bases",
    "random_signs", "signed_hadamard_matrix", "klt_basis", "klt_hadamard_rotation",
    "fold_rmsnorm_weights", "rotate_residual_stream", "rotate_dt_bottleneck", "online_hadamard_before_out_proj",
    "smooth_gate_s_silu", "smooth_dt_bottleneck", "smooth_conv_input", "smooth_x_proj_input_online",
    "smooth_norm_into_in_proj", "smooth_gated_norm_into_out_proj", "smooth_out_proj_input",
    "smoothquant_scales", "weight_input_absmax", "conv_channel_absmax",
]
