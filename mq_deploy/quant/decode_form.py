"""The fake-quant model as the exported decode graph computes it.

A W8A8 decode graph runs its linears as FP16 GEMVs over the INT8 weights, without quantizing
their inputs (export/linear_forms.py says why); the conv's input, when quantized, stays quantized.
`as_decode_graph(model)` turns those activation quantizers off for the duration of a `with`, so a
decode step of the torch model is the reference for a decode step of the graph."""

from __future__ import annotations

from contextlib import contextmanager

from .config import LINEAR_INPUTS
from .modules import StaticActivationQuantizer

LINEAR_INPUT_POINTS = tuple(LINEAR_INPUTS.values()) + ("lm_head_input",)


def _point_of(module_name: str) -> str:
    """'backbone.layers.0.mixer.out_proj_input.1' (a rotation then the quantizer) -> 'out_proj_input'."""
    parts = module_name.split(".")
    return next((p for p in reversed(parts) if p in LINEAR_INPUT_POINTS or p == "conv_input"), "")


@contextmanager
def as_decode_graph(model):
    switched = [m for name, m in model.named_modules()
                if isinstance(m, StaticActivationQuantizer) and m.enabled and _point_of(name) in LINEAR_INPUT_POINTS]
    for m in switched:
        m.enabled = False
    try:
        yield model
    finally:
        for m in switched:
            m.enabled = True
