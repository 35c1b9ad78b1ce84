"""The scan as the MambaQuant paper's fake-quant evaluation runs it: the output contraction
y_t = <h_t, C_t> with both operands quantized per time step (8-bit asymmetric, dynamic: one range
per token position over batch, channels and states for h, over batch and states for C).

The contraction can carry MambaQuant's smooth-fused rotation at that matmul (S4 + R4, reference
notes §5.2), per layer:

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
# the mixer buffers that hold a layer's S4 scale ([N], or [heads, N] on a Mamba-2) and R4 signs [N]
SCALE, SIGNS = "hc_scale", "hc_signs"


def _per_step_fake_quant(x: torch.Tensor) -> torch.Tensor:
    scale, zero_point = scale_and_zero_point(x.min(), x.max(), HC_SPEC)
    return fake_quantize(x, scale, zero_point, HC_SPEC)


class HcContraction:
    """output_fn(h_t, C_t) -> y_t of the reference scans. Mamba-1: h [b, D, N], C [b, N] -> y [b, D];
    Mamba-2: h [b, H, P, N], C [b, H, N] (C repeated per head) -> y [b, H, P].

    scale: S4's s in C's layout without the batch ([N] or [H, N]); signs: R4's, [N]; quantize: fake-
    quantize the two operands per time step; record: keep max|h| and max|C| per state (in C's layout)
    of what passes, the statistics S4 is computed from."""

    def __init__(self, scale=None, signs=None, quantize: bool = True, record: bool = False):
        self.scale = None if scale is None else scale.detach().to(torch.float64)
        self.rotation = None if signs is None else signed_hadamard_matrix(signs)
        self.quantize, self.record = quantize, record
        self.h_absmax = self.c_absmax = None
        self._cast = {}

    def _factors(self, like: torch.Tensor):
        key = (like.device, like.dtype)
        if key not in self._cast:
            self._cast[key] = tuple(None if t is None else t.to(like) for t in (self.scale, self.rotation))
        return self._cast[key]

    def __call__(self, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        if self.record:
            h_max, c_max = h.abs().amax(dim=(0, -2)), c.abs().amax(dim=0)
            self.h_absmax = h_max if self.h_absmax is None else torch.maximum(self.h_absmax, h_max)
            self.c_absmax = c_max if self.c_absmax is None else torch.maximum(self.c_absmax, c_max)
        scale, rotation = self._factors(h)
        if scale is not None:
            h, c = h / scale.unsqueeze(-2), c * scale
        if rotation is not None:
            h, c = h @ rotation, c @ rotation
        if self.quantize:
            h, c = _per_step_fake_quant(h), _per_step_fake_quant(c)
        return (h @ c.unsqueeze(-1)).squeeze(-1)


def _ssd_scan_with_output(x, dt, A, B, C, D=None, *, output_fn, chunk_size=None, **kwargs):
    return ssd_scan_checked_ref(x, dt, A, B, C, D, output_fn=output_fn, **kwargs)


def paper_scan(mixer, contraction: HcContraction):
    """The scan implementation (a `scan_impl` callable) that runs `mixer`'s scan with `contraction`."""
    if hasattr(mixer, "num_heads"):           # a Mamba-2 mixer: the SSD scan's signature
        return functools.partial(_ssd_scan_with_output, output_fn=contraction)
    return functools.partial(selective_scan_ref, output_fn=contraction)


def contraction_of(mixer, quantize: bool = True) -> HcContraction:
    """The mixer's contraction with its own S4/R4 (none when it has none)."""
    return HcContraction(getattr(mixer, SCALE, None), getattr(mixer, SIGNS, None), quantize)


def install_paper_scan(model, quantize: bool = True) -> None:
    """Every mixer of `model` runs the paper's scan: its h·C contraction through the mixer's S4/R4,
    fake-quantized (or not, with quantize=False: the same function as the FP scan, to rounding)."""
    for layer in model.backbone.layers:
        layer.mixer.scan_impl = paper_scan(layer.mixer, contraction_of(layer.mixer, quantize))


def set_contraction_transform(mixer, scale: torch.Tensor | None, signs: torch.Tensor | None) -> None:
    """Give `mixer` an S4 scale and R4 signs (buffers, so they follow the model's device and dtype;
    not in its state_dict: the artifact stores them in transforms.safetensors)."""
    mixer.register_buffer(SCALE, None if scale is None else scale.detach().clone(), persistent=False)
    mixer.register_buffer(SIGNS, None if signs is None else signs.detach().clone(), persistent=False)


def has_contraction_transform(mixer) -> bool:
    return getattr(mixer, SCALE, None) is not None or getattr(mixer, SIGNS, None) is not None


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


@torch.no_grad()
def record_contraction_ranges(model, calib: torch.Tensor, batch_size: int, progress: bool = True) -> list:
    """Run `calib` ([n, L] token ids) through the model's layers (not the head) with every mixer's
    scan recording max|h| and max|C| at its contraction; returns the recorders, one a layer."""
    recorders = [HcContraction(quantize=False, record=True) for _ in model.backbone.layers]
    previous = [layer.mixer.scan_impl for layer in model.backbone.layers]
    device = next(model.parameters()).device
    chunks = calib.split(batch_size)
    try:
        for layer, recorder in zip(model.backbone.layers, recorders):
            layer.mixer.scan_impl = paper_scan(layer.mixer, recorder)
        with progress_bar(total=len(chunks), desc="h·C ranges (S4)", unit="batch", disable=not progress) as bar:
            for chunk in chunks:
                hidden = model.embed(chunk.to(device))
                for layer in model.backbone.layers:
                    hidden = layer(hidden)[0]
                bar.update(1)
    finally:
        for layer, impl in zip(model.backbone.layers, previous):
            layer.mixer.scan_impl = impl
    return recorders


def selective_scan_quantized_hc(*args, **kwargs):
    """The Mamba-1 paper scan without S4/R4 (the plain per-step quantized contraction)."""
    return selective_scan_ref(*args, output_fn=HcContraction(), **kwargs)
