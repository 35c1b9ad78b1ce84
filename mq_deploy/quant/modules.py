"""Fake-quant modules that take the place of a model's `ActivationPoint`s."""

from __future__ import annotations

import torch
import torch.nn as nn

from .quantizer import QuantSpec, fake_quantize, scale_and_zero_point


class StaticActivationQuantizer(nn.Module):
    """Per-tensor fake quantization with calibrated scale / zero point (what TensorRT runs)."""

    is_quantizer = True

    def __init__(self, spec: QuantSpec, scale: float, zero_point: float = 0.0):
        super().__init__()
        self.spec = spec
        self.enabled = True      # off: the identity (quant/decode_form.py), never saved
        self.register_buffer("scale", torch.tensor(float(scale), dtype=torch.float64))
        self.register_buffer("zero_point", torch.tensor(float(zero_point), dtype=torch.float64))

    def forward(self, x):
        return fake_quantize(x, self.scale, self.zero_point, self.spec) if self.enabled else x

    def extra_repr(self):
        return f"int{self.spec.bits} {'sym' if self.spec.symmetric else 'asym'}, scale={self.scale.item():.4g}"


class DynamicActivationQuantizer(nn.Module):
    """Per-sample fake quantization, range from each sample's own min/max (the paper's LLM recipe)."""

    is_quantizer = True

    def __init__(self, spec: QuantSpec):
        super().__init__()
        self.spec = spec

    def forward(self, x):
        dims = tuple(range(1, x.dim()))
        lo, hi = x.double().amin(dim=dims, keepdim=True), x.double().amax(dim=dims, keepdim=True)
        scale, zero_point = scale_and_zero_point(lo, hi, self.spec)
        return fake_quantize(x, scale, zero_point, self.spec)

    def extra_repr(self):
        return f"int{self.spec.bits} {'sym' if self.spec.symmetric else 'asym'}, dynamic per sample"
