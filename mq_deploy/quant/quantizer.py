"""Integer quantization math, bit-exact with ONNX QuantizeLinear / DequantizeLinear.

    q = clamp(round_half_to_even(x / scale) + zero_point, qmin, qmax)      x' = (q - zero_point) * scale

Symmetric: zero_point = 0, range [-2^(b-1), 2^(b-1) - 1], scale = absmax / (2^(b-1) - 1) (what
TensorRT runs). Asymmetric: range [0, 2^b - 1], scale = (max - min) / (2^b - 1), zero_point =
round(-min / scale) (the MambaQuant paper's quantizer; min/max are not forced to include 0).
Granularity: per tensor, per channel along an axis, or per group of `group_size` consecutive
elements of the last axis (4-bit weights).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

MIN_SCALE = 1e-8      # an all-zero tensor still gets a finite, positive scale


@dataclass(frozen=True)
class QuantSpec:
    bits: int = 8
    symmetric: bool = True
    granularity: str = "tensor"        # "tensor" | "channel" | "group"
    axis: int = 0                      # channel axis (granularity="channel")
    group_size: int = 128              # elements per group along the last axis (granularity="group")

    def __post_init__(self):
        if self.bits not in (2, 3, 4, 8):
            raise ValueError(f"unsupported bit width {self.bits}: choose 4 or 8")
        if self.granularity not in ("tensor", "channel", "group"):
            raise ValueError(f"unknown granularity {self.granularity!r}: tensor, channel or group")
        if self.granularity == "group" and self.group_size < 1:
            raise ValueError("group_size must be positive")

    @property
    def qmin(self) -> int:
        return -(2 ** (self.bits - 1)) if self.symmetric else 0

    @property
    def qmax(self) -> int:
        return 2 ** (self.bits - 1) - 1 if self.symmetric else 2 ** self.bits - 1


def scale_and_zero_point(lo: torch.Tensor, hi: torch.Tensor, spec: QuantSpec):
    """Scale and zero point for observed ranges lo..hi (tensors of the same shape)."""
    lo, hi = lo.double(), hi.double()
    if spec.symmetric:
        amax = torch.maximum(lo.abs(), hi.abs())
        scale = (amax / spec.qmax).clamp(min=MIN_SCALE)
        return scale, torch.zeros_like(scale)
    scale = ((hi - lo) / (spec.qmax - spec.qmin)).clamp(min=MIN_SCALE)
    # not clamped to [qmin, qmax]: a range that excludes 0 keeps all its codes (the paper's quantizer)
    return scale, torch.round(-lo / scale)


def quantize(x: torch.Tensor, scale, zero_point, spec: QuantSpec) -> torch.Tensor:
    """Integer codes (as x's float dtype, so callers choose the storage type)."""
    return torch.clamp(torch.round(x / scale) + zero_point, spec.qmin, spec.qmax)


def dequantize(q: torch.Tensor, scale, zero_point) -> torch.Tensor:
    return (q - zero_point) * scale


def fake_quantize(x: torch.Tensor, scale, zero_point, spec: QuantSpec) -> torch.Tensor:
    """Quantize then dequantize, computed in float64 and returned in x's dtype."""
    x64 = x.double()
    return dequantize(quantize(x64, scale, zero_point, spec), scale, zero_point).to(x.dtype)


def _reduce_ranges(x: torch.Tensor, spec: QuantSpec):
    """Per-granule min and max of x, shaped to broadcast against x (group: against the grouped view)."""
    if spec.granularity == "tensor":
        return x.min(), x.max()
    if spec.granularity == "channel":
        dims = [d for d in range(x.dim()) if d != spec.axis % x.dim()]
        return x.amin(dim=dims, keepdim=True), x.amax(dim=dims, keepdim=True)
    return x.amin(dim=-1, keepdim=True), x.amax(dim=-1, keepdim=True)


def _grouped(x: torch.Tensor, spec: QuantSpec) -> torch.Tensor:
    if x.shape[-1] % spec.group_size:
        raise ValueError(f"last dimension {x.shape[-1]} is not a multiple of group_size {spec.group_size}")
    return x.reshape(*x.shape[:-1], x.shape[-1] // spec.group_size, spec.group_size)


@dataclass
class QuantizedTensor:
    """Integer codes plus the parameters that dequantize them (weights, stored for export)."""

    codes: torch.Tensor          # int8 (values within spec's range)
    scale: torch.Tensor          # float64, shaped to broadcast (group: [..., n_groups, 1])
    zero_point: torch.Tensor
    spec: QuantSpec
    shape: tuple

    def dequantize(self, dtype=torch.float32) -> torch.Tensor:
        x = dequantize(self.codes.double(), self.scale, self.zero_point)
        return x.reshape(self.shape).to(dtype)


def quantize_tensor(x: torch.Tensor, spec: QuantSpec, lo=None, hi=None) -> QuantizedTensor:
    """Quantize a (weight) tensor with ranges from its own min/max, or from lo/hi if given
    (e.g. percentile-clipped ranges, broadcastable like _reduce_ranges' output)."""
    x64 = x.detach().double()
    view = _grouped(x64, spec) if spec.granularity == "group" else x64
    if lo is None or hi is None:
        lo, hi = _reduce_ranges(view, spec)
    scale, zero_point = scale_and_zero_point(lo, hi, spec)
    codes = quantize(view, scale, zero_point, spec).to(torch.int8 if spec.bits <= 8 and spec.symmetric
                                                       else torch.int16)
    return QuantizedTensor(codes, scale, zero_point, spec, tuple(x.shape))


def fake_quantize_tensor(x: torch.Tensor, spec: QuantSpec) -> torch.Tensor:
    return quantize_tensor(x, spec).dequantize(x.dtype)
