"""The scan as the MambaQuant paper's fake-quant evaluation runs it: the output contraction
y_t = <h_t, C_t> with both operands quantized per time step (8-bit asymmetric, dynamic: one range
per token position over batch, channels and states for h, over batch and states for C).

The contraction can carry MambaQuant's smooth-fused rotation at that matmul (S4 + R4, reference
notes §5.2; on a Vision Mamba S3 + R4, h / s3 per channel before and y · s3 after), per layer and path:

    <h, C> = <(h / s)·Q, (C·s)·Q>,      Q = diag(signs)·H_N  (orthogonal)

s (S4) balances the two operands' ranges along the state dimension N (one s per group of B/C on a
Mamba-2), and Q (R4) is a signed Hadamard over N. The identity is exact; only the fake quantization
sees the difference. The paper folds 1/s into x_proj's B rows and s·Q into its C rows, with h·Q
online; here both sides are applied at the contraction, the one place either operand is quantized.
That is the same product, and it works on a Mamba-2 too, whose B and C come out of a SiLU that no
fold crosses. (The one difference: x_proj's C rows are weight-rounded unrotated.)

Not deployable: a fused scan kernel never materializes h (docs/quantization.md). It exists so the
"paper" mode reproduces the paper's setting next to the deployable one.
"""

from __future__ import annotations

import functools

import torch

from ..ops.selective_scan import selective_scan_ref
from ..ops.ssd_scan import ssd_scan_checked_ref
from ..progress import progress_bar
from .quantizer import QuantSpec, fake_quantize, scale_and_zero_point
from .transforms import signed_hadamard_matrix

HC_SPEC = QuantSpec(bits=8, symmetric=False)
# The mixer buffers of one SSM path's transforms, named with the path's suffix ("" or "_b"): S4's
# scale ([N], or [heads, N] on a Mamba-2), S3's ([D]) and R4's signs [N]
STATE_SCALE, CHANNEL_SCALE, SIGNS = "hc_scale", "hc_channel_scale", "hc_signs"
TRANSFORM_BUFFERS = (STATE_SCALE, CHANNEL_SCALE, SIGNS)


def _per_step_fake_quant(x: torch.Tensor) -> torch.Tensor:
    scale, zero_point = scale_and_zero_point(x.min(), x.max(), HC_SPEC)
    return fake_quantize(x, scale, zero_point, HC_SPEC)


class HcContraction:
    """output_fn(h_t, C_t) -> y_t of the reference scans. Mamba-1: h [b, D, N], C [b, N] -> y [b, D];
    Mamba-2: h [b, H, P, N], C [b, H, N] (C repeated per head) -> y [b, H, P].

    state_scale: S4's s in C's layout without the batch ([N] or [H, N]); signs: R4's, [N];
    channel_scale: S3's, one per channel of h ([D]; h / s3 before, y * s3 after); quantize: fake-
    quantize the two operands per time step; record: keep, of what passes, max|h| and max|C| per
    state (in C's layout) and max|h| per channel, the statistics S4 and S3 come from."""

    def __init__(self, state_scale=None, signs=None, channel_scale=None, quantize: bool = True, record: bool = False):
        factors = {"state": state_scale, "channel": channel_scale,
                   "rotation": None if signs is None else signed_hadamard_matrix(signs)}
        # kept on the CPU (a model moved off the GPU must not pin GPU memory), cast per device and dtype
        self.factors = {k: None if v is None else v.detach().to("cpu", torch.float64) for k, v in factors.items()}
        self.quantize, self.record = quantize, record
        self.h_absmax = self.c_absmax = self.h_channel_absmax = None
        self._cast = {}

    def _factors(self, like: torch.Tensor) -> dict:
        key = (like.device, like.dtype)
        if key not in self._cast:
            self._cast[key] = {k: None if v is None else v.to(like) for k, v in self.factors.items()}
        return self._cast[key]

    def _record(self, h: torch.Tensor, c: torch.Tensor) -> None:
        seen = {"h_absmax": h.abs().amax(dim=(0, -2)), "c_absmax": c.abs().amax(dim=0),
                "h_channel_absmax": h.abs().amax(dim=(0, -1))}
        for name, value in seen.items():
            old = getattr(self, name)
            setattr(self, name, value if old is None else torch.maximum(old, value))

    def __call__(self, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        if self.record:
            self._record(h, c)
        f = self._factors(h)
        if f["channel"] is not None:
            h = h / f["channel"].unsqueeze(-1)
        if f["state"] is not None:
            h, c = h / f["state"].unsqueeze(-2), c * f["state"]
        if f["rotation"] is not None:
            h, c = h @ f["rotation"], c @ f["rotation"]
        if self.quantize:
            h, c = _per_step_fake_quant(h), _per_step_fake_quant(c)
        y = (h @ c.unsqueeze(-1)).squeeze(-1)
        return y if f["channel"] is None else y * f["channel"]


def _ssd_scan_with_output(x, dt, A, B, C, D=None, *, output_fn, chunk_size=None, **kwargs):
    return ssd_scan_checked_ref(x, dt, A, B, C, D, output_fn=output_fn, **kwargs)


def _selective_scan_by_direction(*args, contractions: dict, reverse: bool = False, **kwargs):
    return selective_scan_ref(*args, reverse=reverse, output_fn=contractions[bool(reverse)], **kwargs)


def paper_scan(mixer, contractions: dict):
    """The scan implementation (a `scan_impl` callable) that runs `mixer`'s scan with `contractions`
    ({path suffix: HcContraction}). A bidirectional mixer calls one scan_impl for both paths; its
    backward path ("_b") is the one that runs reversed (models/vim.py), which is how it is told apart."""
    if hasattr(mixer, "num_heads"):           # a Mamba-2 mixer: the SSD scan's signature
        return functools.partial(_ssd_scan_with_output, output_fn=contractions[""])
    by_direction = {False: contractions[""], True: contractions.get("_b", contractions[""])}
    return functools.partial(_selective_scan_by_direction, contractions=by_direction)


def contraction_of(mixer, quantize: bool = True, suffix: str = "") -> HcContraction:
    """The contraction of a mixer's path with the path's own S4 / S3 / R4 (none when it has none)."""
    get = lambda name: getattr(mixer, name + suffix, None)  # noqa: E731
    return HcContraction(get(STATE_SCALE), get(SIGNS), get(CHANNEL_SCALE), quantize)


def install_paper_scan(model, quantize: bool = True) -> None:
    """Every mixer of `model` runs the paper's scan: its h·C contraction through the transforms of
    each path, fake-quantized (or not, with quantize=False: the same function as the FP scan, to
    rounding)."""
    for layer in model.backbone.layers:
        mixer = layer.mixer
        mixer.scan_impl = paper_scan(mixer, {sfx: contraction_of(mixer, quantize, sfx) for sfx in mixer.PATHS})


def set_contraction_transform(mixer, suffix: str = "", state_scale=None, signs=None, channel_scale=None) -> None:
    """Give a mixer's path (suffix "" or "_b") its S4 / S3 scales and R4 signs, as buffers (so they
    follow the model's device and dtype; not in its state_dict: the artifact stores them in
    transforms.safetensors). None removes one."""
    for name, value in ((STATE_SCALE, state_scale), (SIGNS, signs), (CHANNEL_SCALE, channel_scale)):
        mixer.register_buffer(name + suffix, None if value is None else value.detach().clone(), persistent=False)


def contraction_buffers(mixer) -> dict[str, torch.Tensor]:
    """{buffer name: tensor} of every contraction transform the mixer's paths hold."""
    names = [name + sfx for sfx in mixer.PATHS for name in TRANSFORM_BUFFERS]
    return {name: getattr(mixer, name) for name in names if getattr(mixer, name, None) is not None}


# S4's clamp, as the paper's code clamps it (reference notes §5.2)
S4_SCALE_RANGE = (1e-2, 1e2)


def s4_scale(h_absmax: torch.Tensor, c_absmax: torch.Tensor, groups: int | None = None) -> torch.Tensor:
    """S4's s per state, from max|h| and max|C| in C's layout ([N], or [heads, N] on a Mamba-2):
    s = sqrt(max|h| / max|C|), which gives both operands the same maximum per state (the paper's Vim
    statistic; its LLM code uses max|C| alone, which squares C's largest states instead of evening
    them out). With `groups` (a Mamba-2), one s per group of heads, as B and C are per group: the
    maxima are taken over the group's heads and s is repeated for each. A state that never moves
    (either maximum 0) keeps s = 1."""
    h, c = h_absmax.to(torch.float64), c_absmax.to(torch.float64)
    if groups is not None:
        h = h.unflatten(0, (groups, -1)).amax(dim=1)
        c = c.unflatten(0, (groups, -1)).amax(dim=1)
    s = torch.where((h > 0) & (c > 0), (h / c.clamp_min(1e-300)).sqrt(), torch.ones_like(h)).clamp(*S4_SCALE_RANGE)
    return s if groups is None else s.repeat_interleave(h_absmax.shape[0] // groups, dim=0)


def s3_scale(h_channel_absmax: torch.Tensor) -> torch.Tensor:
    """S3's s per channel of h: its maximum over the calibration set (the paper's Vim code takes the
    99.9999th percentile, which over its 128 images' steps is the maximum to a few parts in 10⁴),
    clamped below at 0.01 as there; a channel that never moves keeps s = 1."""
    m = h_channel_absmax.to(torch.float64)
    return torch.where(m > 0, m, torch.ones_like(m)).clamp_min(S4_SCALE_RANGE[0])


@torch.no_grad()
def record_contraction_ranges(model, calib: torch.Tensor, batch_size: int, progress: bool = True,
                              dtype: torch.dtype | None = None) -> list[dict]:
    """Run `calib` (token ids [n, L], or images) through the model's layers (not the head), a layer at a
    time over every chunk and in `dtype` when given (as calibrate.collect_statistics runs them), with
    every path's contraction recording its ranges; returns the recorders, {path suffix: HcContraction}
    a layer."""
    from .calibrate import in_dtype
    device = next(model.parameters()).device
    chunks = calib.split(batch_size)
    recorders = []
    with progress_bar(total=len(chunks) * len(model.backbone.layers), desc="h·C ranges", unit="batch",
                      disable=not progress) as bar:
        forward_dtype = dtype or next(model.parameters()).dtype
        hidden = [model.embed(chunk.to(device)).to(forward_dtype) for chunk in chunks]
        for layer in model.backbone.layers:
            run = in_dtype(layer, dtype)
            recorders.append({sfx: HcContraction(quantize=False, record=True) for sfx in run.mixer.PATHS})
            previous, run.mixer.scan_impl = run.mixer.scan_impl, paper_scan(run.mixer, recorders[-1])
            try:
                for j, h in enumerate(hidden):
                    hidden[j] = run(h)[0]
                    bar.update(1)
            finally:
                run.mixer.scan_impl = previous
    return recorders
