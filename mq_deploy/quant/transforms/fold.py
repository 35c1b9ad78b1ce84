"""Exact re-parameterisations of a MambaLM or a VisionMamba (MambaQuant §3–§6): each function changes weights in place
and leaves the model's function unchanged. The arithmetic is float64 whatever the model's dtype;
results are cast back to each tensor's own dtype.

Notation (one mixer, token-major, W the nn.Linear weight [out, in], so a linear is x -> x·Wᵀ):
  x, z = split(u·W_inᵀ)           W_in = [W_x; W_g] (in_proj: the first d_inner rows make x)
  t, B, C = split(xc·W_xprojᵀ)     W_xproj = [W_dt; W_B; W_C] (x_proj: the first dt_rank rows make t)
  delta = t·W_Δᵀ                   (dt_proj; its bias is the scan's delta_bias, untouched here)
  out = (y ⊙ z ⊙ σ(g ⊙ z))·W_outᵀ  (g = gate_scale, None meaning 1: plain SiLU)

Recommended order (MambaQuant's): fold γ -> S2 -> R2 -> S5 -> S7 -> R1 -> R5; any order is exact.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ...models.mamba import ActivationPoint, MambaLM, MambaMixer
from .hadamard import HadamardRotation, signed_hadamard_matrix

__all__ = ["fold_rmsnorm_weights", "rotate_residual_stream", "rotate_dt_bottleneck",
           "online_hadamard_before_out_proj", "smooth_gate_s_silu", "smooth_dt_bottleneck",
           "smooth_conv_input"]

ORTHOGONALITY_TOLERANCE = 1e-6   # max |RᵀR - I| accepted for a rotation


def _f64(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().to(torch.float64)


def _store(target: torch.Tensor, value: torch.Tensor) -> None:
    """Write a float64 result into a weight (or a view of one), in the weight's dtype."""
    target.copy_(value.to(target.dtype))


def _rotation(matrix: torch.Tensor, size: int, name: str, device: torch.device) -> torch.Tensor:
    if tuple(matrix.shape) != (size, size):
        raise ValueError(f"{name} must be [{size}, {size}], got shape {tuple(matrix.shape)}")
    r = _f64(matrix).to(device)
    error = (r.T @ r - torch.eye(size, dtype=torch.float64, device=device)).abs().max().item()
    if not error <= ORTHOGONALITY_TOLERANCE:
        raise ValueError(f"{name} is not orthogonal: max |RᵀR - I| = {error:.3g} > {ORTHOGONALITY_TOLERANCE}")
    return r


def _scales(s: torch.Tensor, size: int, name: str, device: torch.device) -> torch.Tensor:
    if tuple(s.shape) != (size,):
        raise ValueError(f"{name}: the smoothing vector must be [{size}], got shape {tuple(s.shape)}")
    s = _f64(s).to(device)
    if not (torch.isfinite(s).all() and (s > 0).all()):
        raise ValueError(f"{name}: smoothing scales must be finite and > 0")
    return s


def _lm_head_is_tied(model: MambaLM) -> bool:
    embeddings = getattr(model.backbone, "embeddings", None)     # a classifier has none
    return embeddings is not None and _head(model).weight is embeddings.weight


def _head(model) -> nn.Linear:
    """The output linear: a language model's lm_head, a classifier's classifier (model.HEAD)."""
    return model.get_submodule(model.HEAD)


def _path(mixer: MambaMixer, suffix: str) -> str:
    if suffix not in mixer.PATHS:
        raise ValueError(f"the mixer has no SSM path {suffix!r} (its paths: {mixer.PATHS})")
    return suffix


# ---------------------------------------------------------------------------------- residual stream

class OnlineMatrix(nn.Module):
    """x -> x·M over the last dim: an online transform that cannot be folded (the exit of a rotated
    residual stream into a head tied to the embedding). Computed in x's dtype."""

    def __init__(self, matrix: torch.Tensor):
        super().__init__()
        self.register_buffer("matrix", matrix.detach().clone())

    def extra_repr(self) -> str:
        return f"size={self.matrix.shape[0]}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.matrix.to(x.dtype)


class ChannelScale(nn.Module):
    """x -> x·diag(scale) over the last dim: a smoothing scale that no preceding op can absorb (the
    x_proj input comes out of a SiLU), applied online as SmoothQuant's pre-quantization multiply;
    the exported graph emits it as one Mul, which TensorRT fuses into the following quantize."""

    def __init__(self, scale: torch.Tensor):
        super().__init__()
        self.register_buffer("scale", scale.detach().clone())

    def extra_repr(self) -> str:
        return f"size={self.scale.shape[0]}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale.to(x.dtype)


@torch.no_grad()
def fold_rmsnorm_weights(model: MambaLM, untie_head: bool = True) -> None:
    """Fold every RMSNorm γ into the linear that reads it, and set γ to 1.

        RMSNorm(h)·diag(γ)·W_inᵀ = RMSNorm₁(h)·(W_in·diag(γ))ᵀ      (columns of in_proj scaled)
        norm_f likewise into the columns of the head (lm_head, or a classifier's).

    A head tied to the embedding is untied first (its own Parameter, config.tie_word_embeddings =
    False) when untie_head: the embedding must not take norm_f's γ. With untie_head=False a tied
    head stays tied and norm_f keeps its γ: `rotate_residual_stream` then moves γ into the online
    exit transform, and the model (and its artifact and export) store the embedding once.
    """
    for layer in model.backbone.layers:
        weight = layer.mixer.in_proj.weight
        _store(weight, _f64(weight) * _f64(layer.norm.weight).to(weight.device))
        layer.norm.weight.fill_(1)
    if _lm_head_is_tied(model) and not untie_head:
        return
    if _lm_head_is_tied(model):
        head = model.lm_head.weight
        model.lm_head.weight = nn.Parameter(head.detach().clone(), requires_grad=head.requires_grad)
    if hasattr(model.config, "tie_word_embeddings"):
        model.config.tie_word_embeddings = False
    head = _head(model).weight
    _store(head, _f64(head) * _f64(model.backbone.norm_f.weight).to(head.device))
    model.backbone.norm_f.weight.fill_(1)


def _require_folded_norms(model: MambaLM) -> None:
    norms = [(f"backbone.layers.{i}.norm", layer.norm) for i, layer in enumerate(model.backbone.layers)]
    if not _lm_head_is_tied(model):
        norms.append(("backbone.norm_f", model.backbone.norm_f))
    for name, norm in norms:
        if not torch.all(norm.weight == 1):
            raise ValueError(f"rotate_residual_stream: {name}.weight (γ) is not folded; RMSNorm commutes "
                             "with a rotation only without γ. Call fold_rmsnorm_weights(model) first")


@torch.no_grad()
def rotate_residual_stream(model: MambaLM, r1: torch.Tensor) -> None:
    """R1: the residual stream h becomes h·R1 everywhere (one orthogonal R1 [d_model, d_model]).

        E ← E·R1                                   (the embedding rows enter rotated; a Vision
                                                    Mamba's patch, class and position embeddings)
        W_in ← W_in·R1                             (every in_proj reads RMSNorm(h·R1) = RMSNorm(h)·R1)
        W_out ← R1ᵀ·W_out,  b_out ← b_out·R1       (every block writes its output rotated)
        W_head ← W_head·R1                         (exit, an untied head)

    Exact because a γ-free RMSNorm commutes with an orthogonal matrix (it preserves each row's
    norm), hence the requirement of folded norms. Unlike the paper, which rotates back with R1ᵀ
    online before norm_f and then forward again for lm_head, the exit rotation is folded into an
    untied lm_head: the same function with no online cost. A head tied to the embedding (E·R1 is
    then its weight too) gets one online d×d transform instead, M = R1ᵀ·diag(γ_f)·R1 at
    `lm_head_input` (norm_f's γ set to 1), since RMSNorm(h·R1)·M·(E·R1)ᵀ = RMSNorm(h)·diag(γ_f)·Eᵀ:
    the embedding is stored once (the artifact and the export are one table smaller) for one small
    matrix product before the head.
    """
    _require_folded_norms(model)
    device = _head(model).weight.device
    r1 = _rotation(r1, model.config.hidden_size, "R1", device)
    tied = _lm_head_is_tied(model)
    if hasattr(model.backbone, "embeddings"):
        embedding = model.backbone.embeddings.weight
        _store(embedding, _f64(embedding) @ r1)
    else:
        _rotate_patch_entry(model.backbone, r1)
    for layer in model.backbone.layers:
        mixer = layer.mixer
        _store(mixer.in_proj.weight, _f64(mixer.in_proj.weight) @ r1)
        _store(mixer.out_proj.weight, r1.T @ _f64(mixer.out_proj.weight))
        if mixer.out_proj.bias is not None:
            _store(mixer.out_proj.bias, _f64(mixer.out_proj.bias) @ r1)
    if not tied:
        _store(_head(model).weight, _f64(_head(model).weight) @ r1)
        return
    norm_f = model.backbone.norm_f.weight
    exit_matrix = r1.T @ (_f64(norm_f).to(device)[:, None] * r1)
    norm_f.fill_(1)
    if type(model.lm_head_input).__name__ != "ActivationPoint":
        raise ValueError("rotate_residual_stream: lm_head_input already holds a transform; a tied head takes the "
                         "exit transform there")
    model.lm_head_input = OnlineMatrix(exit_matrix.to(embedding.dtype))


def _rotate_patch_entry(backbone, r1: torch.Tensor) -> None:
    """A Vision Mamba's first layer input (patch embedding + class token, then position embedding)
    enters rotated: every token h becomes h·R1.

        W_patch ← R1ᵀ·W_patch (output channels; the conv is linear in them), b_patch ← b_patch·R1
        cls ← cls·R1,   pos ← pos·R1
    """
    conv = backbone.patch_embed.proj
    weight = _f64(conv.weight)
    _store(conv.weight, (r1.T @ weight.flatten(1)).view_as(weight))
    if conv.bias is not None:
        _store(conv.bias, _f64(conv.bias) @ r1)
    for param in (backbone.cls_token, backbone.pos_embed):
        _store(param, _f64(param) @ r1)


# ---------------------------------------------------------------------------------- dt bottleneck

@torch.no_grad()
def rotate_dt_bottleneck(mixer: MambaMixer, r5: torch.Tensor, suffix: str = "") -> None:
    """R5: dt_proj's input t becomes t·R5 (orthogonal R5 [dt_rank, dt_rank]).

        W_dt ← R5ᵀ·W_dt  (and its bias b ← b·R5)    so  t' = xc·W_dtᵀ·R5 = t·R5
        W_Δ ← W_Δ·R5                                 so  t'·W_Δ'ᵀ = t·R5·R5ᵀ·W_Δᵀ = t·W_Δᵀ

    The orientation matters: with R5 = K·H from the covariance of t, t·R5 has equal channel
    variances. The official code folds the transpose (t·R5ᵀ), which loses that property.
    `suffix` picks the SSM path (a bidirectional mixer's backward one: "_b").
    """
    rank = mixer.dt_rank
    x_proj, dt_proj = getattr(mixer, "x_proj" + _path(mixer, suffix)), getattr(mixer, "dt_proj" + suffix)
    r5 = _rotation(r5, rank, "R5", dt_proj.weight.device)
    w_dt = x_proj.weight[:rank]
    _store(w_dt, r5.T @ _f64(w_dt))
    if x_proj.bias is not None:
        _store(x_proj.bias[:rank], _f64(x_proj.bias[:rank]) @ r5)
    _store(dt_proj.weight, _f64(dt_proj.weight) @ r5)


@torch.no_grad()
def smooth_dt_bottleneck(mixer: MambaMixer, s: torch.Tensor, suffix: str = "") -> None:
    """S5: dt_proj's input t becomes t/s (s [dt_rank] > 0), on the SSM path `suffix`.

        W_dt ← diag(1/s)·W_dt (and its bias /s),   W_Δ ← W_Δ·diag(s)
    """
    rank = mixer.dt_rank
    x_proj, dt_proj = getattr(mixer, "x_proj" + _path(mixer, suffix)), getattr(mixer, "dt_proj" + suffix)
    s = _scales(s, rank, "S5", dt_proj.weight.device)
    w_dt = x_proj.weight[:rank]
    _store(w_dt, _f64(w_dt) / s[:, None])
    if x_proj.bias is not None:
        _store(x_proj.bias[:rank], _f64(x_proj.bias[:rank]) / s)
    _store(dt_proj.weight, _f64(dt_proj.weight) * s)


# ---------------------------------------------------------------------------------- conv input

@torch.no_grad()
def smooth_conv_input(mixer: MambaMixer, s: torch.Tensor) -> None:
    """S7: the conv input x becomes x/s (s [conv channels] > 0).

        W_x ← diag(1/s)·W_x (and b_x/s),   conv1d.weight[c] ← s_c·conv1d.weight[c]

    W_x: the in_proj rows that feed the conv (mixer.conv_rows: Mamba-1's x; Mamba-2's x, B and C).
    Exact because the conv is depthwise: channel c of the output reads only channel c of the
    input, so conv(x/s)[c]·s_c = conv(x)[c] up to the bias, which is left as is. The paths of a
    bidirectional mixer read the same x, so every path's conv takes s.
    """
    rows = mixer.conv_rows
    s = _scales(s, mixer.conv1d.weight.shape[0], "S7", mixer.conv1d.weight.device)
    w_x = mixer.in_proj.weight[rows]
    _store(w_x, _f64(w_x) / s[:, None])
    if mixer.in_proj.bias is not None:
        _store(mixer.in_proj.bias[rows], _f64(mixer.in_proj.bias[rows]) / s)
    for suffix in mixer.PATHS:
        conv = getattr(mixer, "conv1d" + suffix).weight        # [d_inner, 1, kernel]
        _store(conv, _f64(conv) * s[:, None, None])


@torch.no_grad()
def smooth_x_proj_input_online(mixer: MambaMixer, s: torch.Tensor, suffix: str = "") -> None:
    """The x_proj input u becomes u/s (s [d_inner] > 0) by an online multiply, its inverse folded
    (on the SSM path `suffix`):

        mixer.x_proj_input = ChannelScale(1/s)      u -> u/s
        W_xproj ← W_xproj·diag(s)

    The point must be the identity or an earlier such scale, which this one multiplies (one Mul)."""
    point = "x_proj_input" + _path(mixer, suffix)
    x_proj = getattr(mixer, "x_proj" + suffix)
    current = getattr(mixer, point)
    if type(current) not in (ActivationPoint, ChannelScale):
        raise ValueError(f"smooth_x_proj_input_online: {point} already holds {type(current).__name__}")
    s = _scales(s, mixer.d_inner, "x_proj smoothing", x_proj.weight.device)
    _store(x_proj.weight, _f64(x_proj.weight) * s)
    inverse = 1.0 / s if type(current) is ActivationPoint else _f64(current.scale) / s
    setattr(mixer, point, ChannelScale(inverse.to(torch.promote_types(x_proj.weight.dtype, torch.float32))))


@torch.no_grad()
def smooth_norm_into_in_proj(layer, s: torch.Tensor) -> None:
    """The in_proj input becomes itself / s (s [d_model] > 0): norm γ ← γ / s, in_proj W ← W·diag(s)
    (the norm's output feeds in_proj alone)."""
    s = _scales(s, layer.norm.weight.shape[0], "in_proj smoothing", layer.norm.weight.device)
    _store(layer.norm.weight, _f64(layer.norm.weight) / s)
    _store(layer.mixer.in_proj.weight, _f64(layer.mixer.in_proj.weight) * s)


# ---------------------------------------------------------------------------------- out_proj input

@torch.no_grad()
def smooth_gate_s_silu(mixer: MambaMixer, s: torch.Tensor) -> None:
    """S2 (S-SiLU): the out_proj input y ⊙ z ⊙ σ(g ⊙ z) becomes itself / s (s [d_inner] > 0).

        W_g ← diag(1/s)·W_g (and b_g/s)   so z' = z/s
        g ← g ⊙ s                          so z'·σ(g'·z') = (z/s)·σ(g·z)
        W_out ← W_out·diag(s)

    Composes with an earlier S2: gate_scale multiplies (None counts as ones). gate_scale is a
    non-persistent buffer: whoever saves the model must record it.
    """
    if getattr(mixer, "norm", None) is not None:
        raise ValueError("S-SiLU: this mixer normalizes its gated output (Mamba-2's gated RMSNorm), so scaling z is "
                         "not exact; smooth its out_proj input through the norm weight (smooth_out_proj_input)")
    d_inner, rows = mixer.d_inner, mixer.gate_rows
    s = _scales(s, d_inner, "S2", mixer.out_proj.weight.device)
    w_g = mixer.in_proj.weight[rows]
    _store(w_g, _f64(w_g) / s[:, None])
    if mixer.in_proj.bias is not None:
        _store(mixer.in_proj.bias[rows], _f64(mixer.in_proj.bias[rows]) / s)
    gate_scale = s if mixer.gate_scale is None else _f64(mixer.gate_scale) * s
    # At least float32, the SelectiveScan contract's gate_scale dtype.
    mixer.gate_scale = gate_scale.to(torch.promote_types(mixer.out_proj.weight.dtype, torch.float32))
    _store(mixer.out_proj.weight, _f64(mixer.out_proj.weight) * s)


@torch.no_grad()
def smooth_gated_norm_into_out_proj(mixer, s: torch.Tensor) -> None:
    """S2 of a Mamba-2 mixer: the out_proj input norm(y·silu(z))·w becomes itself / s.

        w ← w / s,   W_out ← W_out·diag(s)

    Exact: the gated RMSNorm's weight multiplies its normalized output channel by channel, after the
    statistics (which it does not enter)."""
    s = _scales(s, mixer.d_inner, "S2 (gated norm)", mixer.out_proj.weight.device)
    _store(mixer.norm.weight, _f64(mixer.norm.weight) / s)
    _store(mixer.out_proj.weight, _f64(mixer.out_proj.weight) * s)


def smooth_out_proj_input(mixer, s: torch.Tensor) -> None:
    """S2 where the mixer allows it: through the gated norm's weight (Mamba-2), else S-SiLU on the gate."""
    if getattr(mixer, "norm", None) is not None:
        smooth_gated_norm_into_out_proj(mixer, s)
    else:
        smooth_gate_s_silu(mixer, s)


@torch.no_grad()
def online_hadamard_before_out_proj(mixer: MambaMixer, signs: torch.Tensor) -> None:
    """R2: rotate the out_proj input online by diag(signs)·H and fold the inverse into out_proj.

        mixer.out_proj_input = HadamardRotation(signs)     v -> v·diag(signs)·H
        W_out ← W_out·diag(signs)·H                         so  (v·D·H)·(W_out·D·H)ᵀ = v·W_outᵀ

    The activation point must still be the identity: if a recipe has already put a module there,
    composing the two is the recipe's decision, so this raises instead of guessing.
    """
    if type(mixer.out_proj_input) is not ActivationPoint:
        raise ValueError(f"online_hadamard_before_out_proj: out_proj_input already holds "
                         f"{type(mixer.out_proj_input).__name__}; compose the online modules in the recipe")
    if tuple(signs.shape) != (mixer.d_inner,):
        raise ValueError(f"R2: signs must be [{mixer.d_inner}], got shape {tuple(signs.shape)}")
    weight = mixer.out_proj.weight
    rotation = HadamardRotation(signs).to(weight.device)
    _store(weight, _f64(weight) @ signed_hadamard_matrix(signs).to(weight.device))
    mixer.out_proj_input = rotation
