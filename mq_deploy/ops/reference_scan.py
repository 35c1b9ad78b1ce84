"""The selective scan as the contract states it (plugins/selective_scan/README.md), in a few readable lines: the
oracle every faster form (fused, chunked, the CUDA kernels) is judged against, so it shares no
code with them. Like mamba_ssm's selective_scan_ref, token-major.

    dt_t = softplus(delta_t + delta_bias)     (delta_t + delta_bias when delta_softplus is False)
    h_t  = exp(dt_t * A) * h_{t-1} + dt_t * x_t * B_t,      h before the first token = initial_state or 0
    y_t  = <h_t, C_t> + D * x_t;     y_t *= z_t * sigmoid(gate_scale * z_t)     (when z is given)

float32 accumulation (float64 for float64 x); y in x's dtype; reverse runs from the last token, so
the final state is the state after token 0."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def selective_scan_ref(x, delta, A, B, C, D=None, delta_bias=None, z=None, gate_scale=None,
                       delta_softplus=True, initial_state=None, reverse=False, return_final_state=False,
                       output_fn=None):
    """x, delta, z [b, L, D]; A [D, N]; B, C [b, L, N]; D, delta_bias, gate_scale [D]; states [b, D, N].
    output_fn(h_t, C_t) -> y_t replaces <h_t, C_t> (the paper's fake-quantized contraction)."""
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    u, A, B, C = x.to(acc), A.to(acc), B.to(acc), C.to(acc)
    dt = delta.to(acc) + (delta_bias.to(acc) if delta_bias is not None else 0)
    dt = F.softplus(dt) if delta_softplus else dt
    h = initial_state.to(acc) if initial_state is not None else u.new_zeros(u.shape[0], u.shape[2], A.shape[1])
    y = torch.zeros_like(u)
    for t in (range(u.shape[1] - 1, -1, -1) if reverse else range(u.shape[1])):
        h = torch.exp(dt[:, t, :, None] * A) * h + (dt[:, t] * u[:, t])[:, :, None] * B[:, t, None, :]
        y[:, t] = (h * C[:, t, None, :]).sum(-1) if output_fn is None else output_fn(h, C[:, t])
    if D is not None:
        y = y + D.to(acc) * u
    if z is not None:
        z = z.to(acc)
        y = y * z * torch.sigmoid((gate_scale.to(acc) if gate_scale is not None else 1) * z)
    return (y.to(x.dtype), h) if return_final_state else y.to(x.dtype)
