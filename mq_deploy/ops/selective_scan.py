"""Selective scan (the Mamba-1 SSM recurrence) in plain PyTorch: the fast forms, judged against the
standalone reference in ops/reference_scan.py. The SelectiveScan op contract (plugins/selective_scan/README.md):

    dt  = softplus(delta + delta_bias)            (or delta + delta_bias when delta_softplus=False)
    h_t = exp(dt_t * A) * h_{t-1} + dt_t * x_t * B_t      h_0 = initial_state (zeros by default)
    y_t = <h_t, C_t> + D * x_t
    y_t = y_t * z_t * sigmoid(gate_scale * z_t)            (only when z is given)

Layout is token-major: x, delta, z are [batch, L, D]; B, C are [batch, L, N]; A is [D, N];
D, delta_bias, gate_scale are [D]; states are [batch, D, N]. Accumulation is float32 (float64 when
x is float64); y comes back in x's dtype, the final state in the accumulation dtype. With
reverse=True the scan runs from the last token to the first and the final state is the state after
token 0.

Three implementations with one signature (benchmarks/bench_reference_scan.py compares them):
- `selective_scan_ref` (ops/reference_scan.py, sharing no code with the others): the sequential
  loop, readable and obviously right (mamba_ssm's selective_scan_ref, token-major). The oracle.
- `selective_scan_fused` (the default): the same loop with the discretization done per step (so
  every step works on cache-sized [batch, D, N] tensors and no [batch, L, D, N] tensor exists
  unless a gradient is needed) and a hand-written backward (one autograd node for the whole scan).
  This is what makes calibration and training fast on a CPU.
- `selective_scan_chunked`: parallel inside chunks (Hillis-Steele scan over the (decay, input)
  pairs), sequential across chunks; the structure of the CUDA kernel. It multiplies only decays in
  (0, 1], so it cannot overflow. On a 2-core CPU it is slower than the loop (measured, see
  docs/reference_scan.md): it does log2(chunk) times the work and the CPU has no parallelism to
  spend it on.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .reference_scan import selective_scan_ref

__all__ = ["selective_scan", "selective_scan_ref", "selective_scan_fused", "selective_scan_chunked",
           "SCAN_IMPLS"]


# time steps whose states the fused scan keeps before contracting them with C in one matmul
# (16 steps of an [8, 16, 1536] float32 state are 12.6 MB; 8 and 16 measured alike, 32 slower)
STATE_BLOCK = 16


def _accumulation_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _check_shapes(x, delta, A, B, C, D, delta_bias, z, gate_scale, initial_state) -> None:
    if x.dim() != 3:
        raise ValueError(f"selective_scan: x must be [batch, L, D], got shape {tuple(x.shape)}")
    batch, length, dim = x.shape
    if A.dim() != 2 or A.shape[0] != dim:
        raise ValueError(f"selective_scan: A must be [D={dim}, N], got {tuple(A.shape)}")
    n = A.shape[1]
    expected = {"delta": (delta, (batch, length, dim)), "B": (B, (batch, length, n)),
                "C": (C, (batch, length, n)), "D": (D, (dim,)), "delta_bias": (delta_bias, (dim,)),
                "z": (z, (batch, length, dim)), "gate_scale": (gate_scale, (dim,)),
                "initial_state": (initial_state, (batch, dim, n))}
    for name, (tensor, shape) in expected.items():
        if tensor is not None and tuple(tensor.shape) != shape:
            raise ValueError(f"selective_scan: {name} must have shape {shape}, got {tuple(tensor.shape)}")


def _prepare(x, delta, A, B, C, D, delta_bias, z, gate_scale, initial_state, delta_softplus):
    """Checks and the per-token quantities every implementation starts from, in the accumulation
    dtype: (acc, A, B, C, dt [b,L,D], dt*x [b,L,D], h0 [b,D,N])."""
    _check_shapes(x, delta, A, B, C, D, delta_bias, z, gate_scale, initial_state)
    acc = _accumulation_dtype(x)
    A, B, C = A.to(acc), B.to(acc), C.to(acc)
    dt = delta.to(acc)
    if delta_bias is not None:
        dt = dt + delta_bias.to(acc)
    if delta_softplus:
        dt = F.softplus(dt)
    h0 = (initial_state.to(acc) if initial_state is not None
          else x.new_zeros(x.shape[0], x.shape[2], A.shape[1], dtype=acc))
    return acc, A, B, C, dt, dt * x.to(acc), h0


def _finish(y, x, D, z, gate_scale, acc):
    """Skip connection and gate, shared by every implementation."""
    if D is not None:
        y = y + x.to(acc) * D.to(acc)
    if z is not None:
        z = z.to(acc)
        gz = z if gate_scale is None else gate_scale.to(acc) * z
        y = y * z * torch.sigmoid(gz)
    return y.to(x.dtype)


def _chunk_states(decay, inp, h0):
    """States h_1..h_T of one chunk: h_t = decay_t * h_{t-1} + inp_t, from h0.

    decay, inp: [b, T, D, N]; h0: [b, D, N]. Hillis-Steele inclusive scan over T of the affine maps
    (a, u): composing "first (a1,u1) then (a2,u2)" gives (a2*a1, a2*u1 + u2).
    """
    length = decay.shape[1]
    step = 1
    while step < length:
        inp = torch.cat([inp[:, :step], decay[:, step:] * inp[:, :-step] + inp[:, step:]], dim=1)
        decay = torch.cat([decay[:, :step], decay[:, step:] * decay[:, :-step]], dim=1)
        step *= 2
    return inp + decay * h0[:, None]


def selective_scan_chunked(x, delta, A, B, C, D=None, delta_bias=None, z=None, gate_scale=None,
                           delta_softplus=True, initial_state=None, reverse=False,
                           return_final_state=False, chunk_size=32):
    """Chunked scan: same contract and result as `selective_scan_ref` (to rounding), faster.

    Memory is O(batch * chunk_size * D * N) whatever L is, so calibration batches stay small.
    """
    acc, A, B, C, dt, dtx, h = _prepare(x, delta, A, B, C, D, delta_bias, z, gate_scale, initial_state,
                                        delta_softplus)
    batch, length, dim = x.shape
    if reverse:  # a reversed scan is a forward scan over time-flipped inputs
        dt, dtx, B, C = (t.flip(1) for t in (dt, dtx, B, C))
    ys = []
    for start in range(0, length, chunk_size):
        end = min(start + chunk_size, length)
        decay = torch.exp(dt[:, start:end, :, None] * A)
        inp = dtx[:, start:end, :, None] * B[:, start:end, None, :]
        states = _chunk_states(decay, inp, h)                      # [b, T, D, N]
        ys.append((states @ C[:, start:end, :, None]).squeeze(-1))  # [b, T, D]
        h = states[:, -1]
    y = torch.cat(ys, dim=1) if ys else x.new_zeros(batch, 0, dim, dtype=acc)
    if reverse:
        y = y.flip(1)
    y = _finish(y, x, D, z, gate_scale, acc)
    return (y, h) if return_final_state else y


def _scan_state_major(dt, dtx, A, B, C, h0, keep_states=False):
    """The forward recurrence, laid out for a CPU: the state is [b, N, D] (D innermost), so <h_t, C_t>
    is a reduction over an outer axis, which vectorizes, where the [b, D, N] layout reduces 16
    elements at a time (2x slower for the whole scan, measured at [8, 512, 1536, 16]); the states
    of STATE_BLOCK steps are contracted with C in one matmul, and the decay is exp2(dt * A * log2 e),
    ATen's exp2 being about twice as fast as its exp. With keep_states the whole state history
    [b, L, N, D] comes back too (what the backward needs); otherwise only a block's worth exists."""
    batch, length, dim = dt.shape
    A2 = (A * math.log2(math.e)).t().contiguous()                  # [N, D]
    B, C = B.contiguous(), C.contiguous()                          # x_proj's output split: strided views
    block = max(1, min(STATE_BLOCK, length))
    blocks = -(-length // block)
    y = dt.new_empty(blocks, batch, block, dim)                    # contiguous per block: no strided writes
    h = h0.transpose(1, 2).contiguous()                            # [b, N, D]
    decay, inp = torch.empty_like(h), torch.empty_like(h)
    history = h.new_empty(batch, length, *h.shape[1:]) if keep_states else None
    states = h.new_empty(batch, block, *h.shape[1:]) if not keep_states else None
    for k, start in enumerate(range(0, length, block)):
        end = min(start + block, length)
        window = history[:, start:end] if keep_states else states[:, :end - start]
        for t in range(start, end):
            torch.mul(dt[:, t, None, :], A2, out=decay).exp2_()
            torch.mul(B[:, t, :, None], dtx[:, t, None, :], out=inp)
            h = torch.addcmul(inp, decay, h, out=window[:, t - start])
        torch.matmul(C[:, start:end, None, :], window, out=y[k, :, :end - start, None, :])
    y = y.transpose(0, 1).reshape(batch, blocks * block, dim)[:, :length]
    h_last = h.transpose(1, 2).contiguous()
    return (y, h_last, history) if keep_states else (y, h_last)


def _scan_backward_state_major(dy, dh_last, dt, dtx, A, B, C, h0, history):
    """The adjoint recurrence g_t = C_t dy_t + exp(dt_{t+1} A) g_{t+1}, backwards in time, in the
    forward's [b, N, D] layout. The per-step adjoints live only in a STATE_BLOCK-step buffer that is
    contracted into the input gradients once per block, so no [b, L, D, N] gradient tensor exists
    (the training step's cost was these full-length tensors, not the loop)."""
    batch, length, dim = dt.shape
    n = A.shape[1]
    A_t = A.t().contiguous()                                       # [N, D]
    A2 = A_t * math.log2(math.e)
    B, C = B.contiguous(), C.contiguous()
    dy = dy.contiguous() if dy is not None else dt.new_zeros(batch, length, dim)
    h0 = h0.transpose(1, 2).contiguous()
    g = (dh_last.transpose(1, 2).contiguous() if dh_last is not None
         else dt.new_zeros(batch, n, dim))
    block = max(1, min(STATE_BLOCK, length))
    adjoints = dt.new_empty(batch, block, n, dim)                  # g_t of one block
    log_decay_grads = torch.empty_like(adjoints)                   # dLoss/d(dt_t * A) of one block
    d_dt, d_dtx = torch.empty_like(dt), torch.empty_like(dt)
    d_B = B.new_empty(batch, length, n)
    d_A = A_t.new_zeros(n, dim)
    decay, next_decay = torch.empty_like(g), None
    for start in reversed(range(0, length, block)):
        end = min(start + block, length)
        for t in range(end - 1, start - 1, -1):
            g_t = adjoints[:, t - start]
            torch.mul(C[:, t, :, None], dy[:, t, None, :], out=g_t)
            if next_decay is None:
                g_t.add_(g)
            else:
                g_t.addcmul_(next_decay, g)
            g = g_t
            torch.mul(dt[:, t, None, :], A2, out=decay).exp2_()
            previous = history[:, t - 1] if t > 0 else h0
            torch.mul(g, previous, out=log_decay_grads[:, t - start]).mul_(decay)
            if next_decay is None:
                next_decay = torch.empty_like(decay)
            decay, next_decay = next_decay, decay
        window, grads = adjoints[:, :end - start], log_decay_grads[:, :end - start]
        d_dtx[:, start:end] = torch.matmul(B[:, start:end, None, :], window).squeeze(2)
        d_B[:, start:end] = torch.matmul(window, dtx[:, start:end, :, None]).squeeze(-1)
        d_dt[:, start:end] = (grads * A_t).sum(2)
        d_A += (grads * dt[:, start:end, None, :]).sum((0, 1))
        g = g.clone()                                              # the buffer is rewritten by the next block
    d_h0 = (next_decay * g).transpose(1, 2).contiguous() if next_decay is not None else g.transpose(1, 2)
    d_C = torch.matmul(history, dy[..., None]).squeeze(-1)          # [b, L, N]
    return d_dt, d_dtx, d_A.t().contiguous(), d_B, d_C, d_h0


class _FusedScan(torch.autograd.Function):
    """The recurrence with discretization fused into the time loop, and a hand-written backward.

    Inputs (accumulation dtype): dt, dtx [b, L, D]; A [D, N]; B, C [b, L, N]; h0 [b, D, N].
    Returns y [b, L, D] (= <h_t, C_t>, before D and the gate) and h_L [b, D, N].
    Each step touches only [b, N, D]-sized tensors, which stay in cache; the state history is kept
    only when a gradient is needed. The backward (_scan_backward_state_major) runs the adjoint
    recurrence backwards in time.
    """

    @staticmethod
    def forward(ctx, dt, dtx, A, B, C, h0):
        if not any(ctx.needs_input_grad):
            return _scan_state_major(dt, dtx, A, B, C, h0)
        y, h, history = _scan_state_major(dt, dtx, A, B, C, h0, keep_states=True)
        ctx.save_for_backward(dt, dtx, A, B, C, h0, history)
        return y, h

    @staticmethod
    def backward(ctx, dy, dh_last):
        return _scan_backward_state_major(dy, dh_last, *ctx.saved_tensors)


def scan_with_recurrence(recurrence, x, delta, A, B, C, D=None, delta_bias=None, z=None, gate_scale=None,
                         delta_softplus=True, initial_state=None, reverse=False, return_final_state=False):
    """The SelectiveScan contract around a recurrence `(dt, dtx, A, B, C, h0) -> (<h_t, C_t>, h_L)`
    (_FusedScan.apply, or another implementation of it such as train.py's compiled one): the
    discretization inputs, the reversal, the D skip and the gate are done here once."""
    acc, A, B, C, dt, dtx, h0 = _prepare(x, delta, A, B, C, D, delta_bias, z, gate_scale, initial_state,
                                         delta_softplus)
    if reverse:  # a reversed scan is a forward scan over time-flipped inputs
        dt, dtx, B, C = (t.flip(1) for t in (dt, dtx, B, C))
    y, h = recurrence(dt, dtx, A, B, C, h0)
    if reverse:
        y = y.flip(1)
    y = _finish(y, x, D, z, gate_scale, acc)
    return (y, h) if return_final_state else y


def selective_scan_fused(*args, **kwargs):
    """Sequential scan with discretization fused into the loop and a hand-written backward."""
    return scan_with_recurrence(_FusedScan.apply, *args, **kwargs)


SCAN_IMPLS = {"sequential": selective_scan_ref, "fused": selective_scan_fused,
              "chunked": selective_scan_chunked}


def selective_scan(*args, impl="fused", **kwargs):
    """Dispatch to one of SCAN_IMPLS by name, or to a callable with the same signature (how the
    quantization code substitutes a scan that fake-quantizes the h·C contraction)."""
    if callable(impl):
        return impl(*args, **kwargs)
    try:
        fn = SCAN_IMPLS[impl]
    except KeyError:
        raise ValueError(f"unknown scan implementation {impl!r}; choose one of {sorted(SCAN_IMPLS)}") from None
    if fn is selective_scan_ref:      # the reference does not check shapes; the dispatcher does
        _check_call(*args, **kwargs)
    return fn(*args, **kwargs)


def _check_call(x, delta, A, B, C, D=None, delta_bias=None, z=None, gate_scale=None, *args, initial_state=None,
                **kwargs):
    _check_shapes(x, delta, A, B, C, D, delta_bias, z, gate_scale, initial_state)
