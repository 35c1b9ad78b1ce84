"""The per-graph form of a linear (mq_deploy/export/linear_forms.py), from its weight spec and input
scale: the table of docs/export.md, "What each linear becomes"."""

from __future__ import annotations

import pytest

from mq_deploy.export.linear_forms import linear_form, quantizes_input
from mq_deploy.quant.quantizer import QuantSpec

INT8 = QuantSpec(8, True, "channel", axis=0)
INT4 = QuantSpec(4, True, "group", group_size=128)


@pytest.mark.parametrize("spec, scale, prefill, decode", [
    (None, None, "float", "float"),                                        # not quantized
    (INT8, 0.02, "int8", "int8-weights-fp-gemv"),                          # W8A8
    (INT8, None, "int8-weights-fp-gemv", "int8-weights-fp-gemv"),          # W8A16
    (INT4, None, "int4-weight-only", "int4-weight-only"),                  # W4A16
])
def test_forms(spec, scale, prefill, decode):
    assert linear_form(spec, scale, "prefill") == prefill
    assert linear_form(spec, scale, "decode") == decode
    assert quantizes_input(linear_form(spec, scale, "prefill")) == (prefill == "int8")
    assert not quantizes_input(linear_form(spec, scale, "decode"))


def test_unknown_graph():
    with pytest.raises(ValueError, match="unknown graph"):
        linear_form(INT8, 0.02, "vision")
