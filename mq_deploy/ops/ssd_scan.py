"""The Mamba-2 scan (SSD, "state space duality", Dao & Gu 2024) in plain PyTorch: a sequential
reference, the oracle, and the chunked SSD form, which is what runs (tested against each other in
tests/test_models_mamba2.py). The contract, per head h (A is one scalar per head):

    dt_t = clamp(softplus(dt_t + dt_bias), *dt_limit)     (bias, softplus and limit each optional)
    h_t  = exp(dt_t * A) * h_{t-1} + (dt_t * x_t) B_t^T        h_t [P, N]; h before the first token
                                                                = initial_state or 0
    y_t  = h_t C_t + D * x_t

Layout is token-major, as mamba_ssm's mamba_chunk_scan_combined: x [batch, L, H, P]; dt [batch, L, H];
A, D, dt_bias [H]; B, C [batch, L, G, N] with G groups, group g serving the H/G consecutive heads
g*H/G ... (g+1)*H/G - 1 (transformers' repeat_interleave, mamba_ssm's "(g r)" heads); states
[batch, H, P, N]. Accumulation is float32 (float64 when x is float64); y comes back in x's dtype,
the final state in the accumulation dtype. Both forms return (y, final_state).

- `ssd_scan_ref`: the recurrence, a token at a time, in a few readable lines; shares no code with
  the chunked form (like mamba_ssm's selective_state_update applied L times).
- `ssd_scan_chunked`: the SSD algorithm (mamba_ssm's ssd_minimal_discrete / chunk_scan): inside a
  chunk of Q tokens the output is a masked "attention" (C_l . B_s) * exp(cum_l - cum_s) applied to
  dt*x, as batched matmuls; each chunk's input to the state is one more matmul; only the state
  passing between chunks is a loop, L/Q steps of [batch, H, P, N]. Every exponent is a sum of
  dt * A <= 0 over a stretch of tokens, so nothing overflows; the masked entries are exp(-inf) = 0.
  With B and C shared by the H/G heads of a group, C.B is computed once per group.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["ssd_scan", "ssd_scan_ref", "ssd_scan_checked_ref", "ssd_scan_chunked", "SSD_SCAN_IMPLS",
           "CPU_CHUNK_SIZE"]

# Tokens per chunk of the chunked form on a CPU. Intra-chunk work grows with Q, the sequential
# state passing with L/Q. One thread, P 64, N 128, at [4 x 1024 tokens, 24 heads] and [1 x 2048, 48]
# (mamba2-130m / 780m-shaped): 64 and 128 alike, 32 and 256 (the CUDA kernels' chunk) 1.4-1.7x
# slower. The result does not depend on it beyond rounding.
CPU_CHUNK_SIZE = 64


def _accumulation_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def ssd_scan_ref(x, dt, A, B, C, D=None, dt_bias=None, dt_softplus=False, dt_limit=None, initial_state=None,
                 output_fn=None):
    """The sequential recurrence (the oracle). Shapes as in the module docstring; returns
    (y [b, L, H, P] in x's dtype, final state [b, H, P, N]). output_fn(h_t [b, H, P, N], C_t [b, H, N])
    -> y_t [b, H, P] replaces h_t C_t (the paper mode's fake-quantized contraction)."""
    acc = _accumulation_dtype(x)
    batch, length, heads, head_dim = x.shape
    u = x.to(acc)
    dt = dt.to(acc) + (dt_bias.to(acc) if dt_bias is not None else 0)
    if dt_softplus:
        dt = F.softplus(dt)
    if dt_limit is not None:
        dt = dt.clamp(min=dt_limit[0], max=dt_limit[1])
    per_group = heads // B.shape[2]
    B = B.to(acc).repeat_interleave(per_group, dim=2)            # [b, L, H, N]: head h reads group h // per_group
    C = C.to(acc).repeat_interleave(per_group, dim=2)
    h = (initial_state.to(acc) if initial_state is not None
         else u.new_zeros(batch, heads, head_dim, B.shape[-1]))
    y = torch.empty_like(u)
    for t in range(length):
        decay = torch.exp(dt[:, t] * A.to(acc))[:, :, None, None]                 # [b, H, 1, 1]
        h = decay * h + (dt[:, t, :, None] * u[:, t])[..., None] * B[:, t, :, None, :]
        y[:, t] = (h * C[:, t, :, None, :]).sum(-1) if output_fn is None else output_fn(h, C[:, t])
    if D is not None:
        y = y + D.to(acc)[:, None] * u
    return y.to(x.dtype), h


def _check_shapes(x, dt, A, B, C, D, dt_bias, initial_state) -> None:
    if x.dim() != 4:
        raise ValueError(f"ssd_scan: x must be [batch, L, heads, head_dim], got shape {tuple(x.shape)}")
    batch, length, heads, head_dim = x.shape
    if B.dim() != 4 or B.shape[:2] != (batch, length):
        raise ValueError(f"ssd_scan: B must be [batch={batch}, L={length}, groups, N], got {tuple(B.shape)}")
    groups, n = B.shape[2], B.shape[3]
    if heads % groups:
        raise ValueError(f"ssd_scan: {heads} heads cannot be split among {groups} groups of B and C")
    expected = {"dt": (dt, (batch, length, heads)), "A": (A, (heads,)), "C": (C, (batch, length, groups, n)),
                "D": (D, (heads,)), "dt_bias": (dt_bias, (heads,)),
                "initial_state": (initial_state, (batch, heads, head_dim, n))}
    for name, (tensor, shape) in expected.items():
        if tensor is not None and tuple(tensor.shape) != shape:
            raise ValueError(f"ssd_scan: {name} must have shape {shape}, got {tuple(tensor.shape)}")


def ssd_scan_chunked(x, dt, A, B, C, D=None, dt_bias=None, dt_softplus=False, dt_limit=None, initial_state=None,
                     chunk_size: int = CPU_CHUNK_SIZE):
    """The chunked SSD scan: same contract and result as `ssd_scan_ref` (to rounding), fast on a CPU.
    Memory is a few times x's (the [Q, Q] mask per head and chunk is x-sized at Q = P)."""
    _check_shapes(x, dt, A, B, C, D, dt_bias, initial_state)
    acc = _accumulation_dtype(x)
    batch, length, heads, head_dim = x.shape
    groups, n = B.shape[2], B.shape[3]
    per_group = heads // groups
    dt = dt.to(acc)
    if dt_bias is not None:
        dt = dt + dt_bias.to(acc)
    if dt_softplus:
        dt = F.softplus(dt)
    if dt_limit is not None:
        dt = dt.clamp(min=dt_limit[0], max=dt_limit[1])
    q = max(1, min(int(chunk_size), length))
    pad = -length % q                         # padded tokens have dt = 0: no decay, no input, no output used
    chunks = (length + pad) // q
    dtx = x.to(acc) * dt[..., None]                                       # [b, L, H, P]
    log_decay = dt * A.to(acc)                                            # [b, L, H], <= 0
    B, C = B.to(acc), C.to(acc)
    if pad:
        dtx, log_decay, B, C = (F.pad(t, (0, 0) * (t.dim() - 2) + (0, pad)) for t in (dtx, log_decay, B, C))
    # chunk-major, heads split as (group, head in group), positions next to last: batched matmuls
    dtx = dtx.view(batch, chunks, q, groups, per_group, head_dim).permute(0, 1, 3, 4, 2, 5)   # [b,c,G,R,Q,P]
    B = B.view(batch, chunks, q, groups, n).transpose(2, 3)                                  # [b,c,G,Q,N]
    C = C.view(batch, chunks, q, groups, n).transpose(2, 3)
    cum = log_decay.view(batch, chunks, q, groups, per_group).permute(0, 1, 3, 4, 2).cumsum(-1)   # [b,c,G,R,Q]

    # 1. inside each chunk: y_l = sum_{s <= l} (C_l . B_s) exp(cum_l - cum_s) dt_s x_s
    causal = torch.ones(q, q, dtype=torch.bool, device=x.device).tril()
    segment = (cum[..., :, None] - cum[..., None, :]).masked_fill_(~causal, float("-inf")).exp_()   # [b,c,G,R,Q,Q]
    scores = (C @ B.transpose(-1, -2))[:, :, :, None]                                               # [b,c,G,1,Q,Q]
    # in place when nothing differentiates through it (the [..., Q, Q] tensor is the largest here);
    # training keeps exp's output for its backward
    weights = segment * scores if torch.is_grad_enabled() and segment.requires_grad else segment.mul_(scores)
    y = weights @ dtx                                                                                # [b,c,G,R,Q,P]

    # 2. what each chunk adds to the state at its end: sum_s exp(cum_last - cum_s) dt_s x_s B_s^T
    to_end = torch.exp(cum[..., -1:] - cum)                                                          # [b,c,G,R,Q]
    chunk_input = (dtx * to_end[..., None]).transpose(-1, -2) @ B[:, :, :, None]                    # [b,c,G,R,P,N]

    # 3. across chunks, sequentially: the state entering each chunk
    chunk_decay = torch.exp(cum[..., -1])[..., None, None]                                           # [b,c,G,R,1,1]
    h = (initial_state.to(acc).reshape(batch, groups, per_group, head_dim, n) if initial_state is not None
         else dtx.new_zeros(batch, groups, per_group, head_dim, n))
    starts = []
    for k in range(chunks):
        starts.append(h)
        h = chunk_decay[:, k] * h + chunk_input[:, k]
    starts = torch.stack(starts, dim=1)                                                              # [b,c,G,R,P,N]

    # 4. the entering state's share of each output: exp(cum_l) h_start C_l
    y = y + torch.exp(cum)[..., None] * (C[:, :, :, None] @ starts.transpose(-1, -2))               # [b,c,G,R,Q,P]
    y = y.permute(0, 1, 4, 2, 3, 5).reshape(batch, chunks * q, heads, head_dim)[:, :length]
    if D is not None:
        y = y + D.to(acc)[:, None] * x.to(acc)
    return y.to(x.dtype), h.reshape(batch, heads, head_dim, n)


def ssd_scan_checked_ref(x, dt, A, B, C, D=None, dt_bias=None, dt_softplus=False, dt_limit=None,
                         initial_state=None, output_fn=None, **_):
    """`ssd_scan_ref` after the shape checks (and taking the dispatcher's chunk_size, unused)."""
    _check_shapes(x, dt, A, B, C, D, dt_bias, initial_state)
    return ssd_scan_ref(x, dt, A, B, C, D, dt_bias, dt_softplus, dt_limit, initial_state, output_fn)


# "fused" is Mamba-1's default name (LayeredModel.set_scan_impl sets one name on every mixer): here
# it is the chunked form, the fast one
SSD_SCAN_IMPLS = {"sequential": ssd_scan_checked_ref, "chunked": ssd_scan_chunked, "fused": ssd_scan_chunked}


def ssd_scan(x, dt, A, B, C, D=None, dt_bias=None, dt_softplus=False, dt_limit=None, initial_state=None,
             chunk_size: int = CPU_CHUNK_SIZE, impl="chunked"):
    """Dispatch to one of SSD_SCAN_IMPLS by name, or to a callable with the same signature (a scan
    that fake-quantizes inside, say). Returns (y, final_state)."""
    if callable(impl):
        return impl(x, dt, A, B, C, D, dt_bias=dt_bias, dt_softplus=dt_softplus, dt_limit=dt_limit,
                    initial_state=initial_state, chunk_size=chunk_size)
    try:
        fn = SSD_SCAN_IMPLS[impl]
    except KeyError:
        raise ValueError(f"unknown SSD scan implementation {impl!r}; choose one of {sorted(SSD_SCAN_IMPLS)}") from None
    return fn(x, dt, A, B, C, D, dt_bias=dt_bias, dt_softplus=dt_softplus, dt_limit=dt_limit,
              initial_state=initial_state, chunk_size=chunk_size)
