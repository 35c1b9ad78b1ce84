"""GPTQ weight rounding (Frantar et al., 2022): quantize a linear's weight one input column at a time
and push each column's rounding error onto the columns not yet quantized, weighted by the inverse
Hessian H = E[x xᵀ] of the linear's calibration inputs, so that x·Wᵀ moves as little as possible.
Here after the recipe's transforms, on the inputs the transformed linear really sees.

The result must survive the artifact: an artifact stores weights and every reader (load_quantized,
export) re-derives codes with round-to-nearest from their own absmax (`quantize_tensor`). So GPTQ
here returns dequantized values q·s whose absmax re-derivation gives back s and q exactly: codes
stay within ±qmax (never the asymmetric -qmax-1) and, in each scale group, the element that set the
scale (its absmax) is quantized to ±qmax whatever its updated value, its error propagated like any
other. Symmetric specs only (deploy mode).
"""

from __future__ import annotations

import torch

from .quantizer import MIN_SCALE, QuantSpec

DAMP = 0.01        # of the mean diagonal of H, added to the diagonal (the reference implementation's default)


def _inverse_hessian_factor(hessian: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Upper Cholesky factor of H⁻¹ after damping; columns no calibration input ever reached get a
    unit diagonal and their weights zeroed (they multiplied zero on every calibration token: the
    reference implementation's choice). A Hessian that is still not positive definite gets ten
    times the damping, up to three times, before giving up with the linear's name."""
    h = hessian.clone()
    dead = torch.diag(h) == 0
    h[dead, dead] = 1.0
    weight[:, dead] = 0.0
    eye = torch.eye(h.shape[0], dtype=h.dtype, device=h.device)
    mean_diagonal = torch.diag(h).mean()
    for damp in (DAMP, 10 * DAMP, 100 * DAMP, 1000 * DAMP):
        factor, info = torch.linalg.cholesky_ex(h + damp * mean_diagonal * eye)
        if int(info) == 0:
            return torch.linalg.cholesky(torch.cholesky_inverse(factor), upper=True)
    raise ValueError("the calibration Hessian is not positive definite even with 1000x damping "
                     "(NaN or inf activations?)")


def gptq_quantize(weight: torch.Tensor, hessian: torch.Tensor, spec: QuantSpec) -> torch.Tensor:
    """weight [out, in], hessian [in, in] (E[x xᵀ] of the inputs): the GPTQ-rounded weight (q·s, in
    float64), which round-to-nearest from its own absmax (quantize_tensor with `spec`) reproduces."""
    if not spec.symmetric or spec.granularity not in ("channel", "group") or (
            spec.granularity == "channel" and spec.axis not in (0, -2)):
        raise ValueError(f"GPTQ takes symmetric per-output-channel or per-group weight specs, not {spec}")
    w = weight.detach().double().clone()
    in_features = w.shape[1]
    u = _inverse_hessian_factor(hessian.double().to(w.device), w)
    qmax = spec.qmax
    if spec.granularity == "channel":
        block = 128
        scale = (w.abs().amax(dim=1) / qmax).clamp(min=MIN_SCALE)
        # the column holding each row's absmax (-1, i.e. none, for an all-zero row: it stays zero)
        anchor = torch.where(w.abs().amax(dim=1) > 0, w.abs().argmax(dim=1), -1)
    else:
        if in_features % spec.group_size:
            raise ValueError(f"in_features {in_features} is not a multiple of group_size {spec.group_size}")
        block = spec.group_size                              # one scale group per block: its scale is set
                                                             # from up-to-date values at the block's start
    result = torch.zeros_like(w)
    for start in range(0, in_features, block):
        end = min(start + block, in_features)
        w1 = w[:, start:end].clone()
        if spec.granularity == "group":
            scale = (w1.abs().amax(dim=1) / qmax).clamp(min=MIN_SCALE)
            anchor = torch.where(w1.abs().amax(dim=1) > 0, start + w1.abs().argmax(dim=1), -1)
        errors = torch.zeros_like(w1)
        u1 = u[start:end, start:end]
        for i in range(end - start):
            col = w1[:, i]
            q = torch.clamp(torch.round(col / scale), -qmax, qmax)
            pinned = anchor == start + i
            q = torch.where(pinned, torch.where(col < 0, -qmax, qmax).to(q.dtype), q)
            result[:, start + i] = q * scale
            err = (col - q * scale) / u1[i, i]
            w1[:, i:] -= err[:, None] * u1[i, i:][None, :]
            errors[:, i] = err
        w[:, end:] -= errors @ u[start:end, end:]
    return result
