"""The reference scans against an independent implementation (transformers' mamba_selective_scan)
and against each other, in float64 and float32, with every option of the op contract."""

from __future__ import annotations

import pytest
import torch

from mq_deploy.ops import SCAN_IMPLS, selective_scan, selective_scan_chunked, selective_scan_fused, selective_scan_ref


def make_inputs(batch=2, length=37, dim=24, dstate=6, dtype=torch.float64, seed=0, with_state=True):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=dtype)  # noqa: E731
    return dict(x=r(batch, length, dim), delta=r(batch, length, dim), A=-torch.rand(dim, dstate, generator=g, dtype=dtype) * 4,
                B=r(batch, length, dstate), C=r(batch, length, dstate), D=r(dim), delta_bias=r(dim),
                z=r(batch, length, dim), gate_scale=torch.rand(dim, generator=g, dtype=dtype) + 0.5,
                initial_state=r(batch, dim, dstate) if with_state else None)


SEQUENCE_INPUTS = ("x", "delta", "B", "C", "z")  # the [batch, L, ...] ones


def rel_err(a, b):
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


def test_reference_matches_transformers_scan():
    from transformers.models.mamba.modeling_mamba import mamba_selective_scan
    inp = make_inputs(with_state=False, dtype=torch.float32)
    ours = selective_scan_ref(**{k: v for k, v in inp.items() if k != "gate_scale"})
    # transformers' scan is channel-major ([b, D, L]) and gates with silu(z)
    theirs = mamba_selective_scan(inp["x"].transpose(1, 2), inp["delta"].transpose(1, 2), inp["A"],
                                  inp["B"].transpose(1, 2), inp["C"].transpose(1, 2), D=inp["D"],
                                  z=inp["z"].transpose(1, 2), delta_bias=inp["delta_bias"],
                                  delta_softplus=True).transpose(1, 2)
    assert rel_err(ours, theirs) < 1e-6


def test_gate_scale_is_s_silu():
    inp = make_inputs()
    y = selective_scan_ref(**inp)
    ungated = selective_scan_ref(**{**inp, "z": None})
    z, s = inp["z"], inp["gate_scale"]
    torch.testing.assert_close(y, ungated * z * torch.sigmoid(s * z), rtol=1e-12, atol=1e-12)


def test_no_softplus_uses_delta_plus_bias():
    inp = make_inputs(with_state=False)
    inp["delta"] = inp["delta"].abs()
    a = selective_scan_ref(**{**inp, "delta_bias": None}, delta_softplus=False)
    b = selective_scan_ref(**{**inp, "delta": torch.log(torch.expm1(inp["delta"])), "delta_bias": None})
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_initial_state_continues_a_split_sequence():
    inp = make_inputs(with_state=False)
    full, h_full = selective_scan_ref(**inp, return_final_state=True)
    cut = 15
    first = {k: (v[:, :cut] if k in SEQUENCE_INPUTS else v) for k, v in inp.items()}
    second = {k: (v[:, cut:] if k in SEQUENCE_INPUTS else v) for k, v in inp.items()}
    y1, h1 = selective_scan_ref(**first, return_final_state=True)
    y2, h2 = selective_scan_ref(**{**second, "initial_state": h1}, return_final_state=True)
    torch.testing.assert_close(torch.cat([y1, y2], 1), full, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(h2, h_full, rtol=1e-12, atol=1e-12)


def test_reverse_is_the_forward_scan_of_flipped_time():
    inp = make_inputs()
    y, h = selective_scan_ref(**inp, reverse=True, return_final_state=True)
    flipped = {k: (v.flip(1) if k in SEQUENCE_INPUTS else v) for k, v in inp.items()}
    y_f, h_f = selective_scan_ref(**flipped, return_final_state=True)
    torch.testing.assert_close(y, y_f.flip(1), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(h, h_f, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("impl", ["fused", "chunked"])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("length", [1, 7, 37, 130])
def test_fast_forms_match_reference(impl, reverse, length):
    inp = make_inputs(length=length)
    y64, h64 = selective_scan_ref(**inp, reverse=reverse, return_final_state=True)
    y, h = SCAN_IMPLS[impl](**inp, reverse=reverse, return_final_state=True)
    assert rel_err(y, y64) < 1e-12 and rel_err(h, h64) < 1e-12
    inp32 = {k: (v.float() if v is not None else None) for k, v in inp.items()}
    y32, h32 = SCAN_IMPLS[impl](**inp32, reverse=reverse, return_final_state=True)
    ref32 = selective_scan_ref(**inp32, reverse=reverse, return_final_state=True)
    assert y32.dtype == torch.float32 and h32.dtype == torch.float32
    assert rel_err(y32, ref32[0]) < 1e-5 and rel_err(h32, ref32[1]) < 1e-5
    assert rel_err(y32, y64) < 1e-5


def test_half_precision_inputs_accumulate_in_float32():
    inp = make_inputs(dtype=torch.float32)
    half = {k: (v.half() if k in SEQUENCE_INPUTS else v) for k, v in inp.items()}
    y, h = selective_scan_fused(**half, return_final_state=True)
    assert y.dtype == torch.float16 and h.dtype == torch.float32
    ref = selective_scan_ref(**{k: (v.float() if v is not None else None) for k, v in half.items()},
                             return_final_state=True)
    assert rel_err(y, ref[0]) < 2e-3  # one fp16 rounding of the output
    assert rel_err(h, ref[1]) < 1e-5


@pytest.mark.parametrize("reverse", [False, True])
def test_fused_backward_matches_autograd_of_the_reference(reverse):
    base = make_inputs(length=21)
    a = {k: v.clone().requires_grad_() for k, v in base.items()}
    b = {k: v.clone().requires_grad_() for k, v in base.items()}
    ya, ha = selective_scan_ref(**a, reverse=reverse, return_final_state=True)
    yb, hb = selective_scan_fused(**b, reverse=reverse, return_final_state=True)
    wy, wh = torch.randn_like(ya), torch.randn_like(ha)
    ((ya * wy).sum() + (ha * wh).sum()).backward()
    ((yb * wy).sum() + (hb * wh).sum()).backward()
    for name in base:
        torch.testing.assert_close(b[name].grad, a[name].grad, rtol=1e-10, atol=1e-10, msg=name)


def test_fused_gradcheck():
    inp = make_inputs(batch=1, length=6, dim=3, dstate=2)
    names = list(inp)
    args = tuple(inp[n].clone().requires_grad_() for n in names)
    fn = lambda *t: selective_scan_fused(**dict(zip(names, t)), return_final_state=True)  # noqa: E731
    assert torch.autograd.gradcheck(fn, args)


def test_dispatch_and_shape_errors():
    inp = make_inputs()
    torch.testing.assert_close(selective_scan(**inp, impl="sequential"), selective_scan_chunked(**inp))
    with pytest.raises(ValueError, match="unknown scan implementation"):
        selective_scan(**inp, impl="magic")
    with pytest.raises(ValueError, match="B must have shape"):   # the dispatcher checks before the reference runs
        selective_scan(**{**inp, "B": inp["B"][:, :, :-1]}, impl="sequential")
    with pytest.raises(ValueError, match="initial_state must have shape"):
        selective_scan_fused(**{**inp, "initial_state": inp["initial_state"][:1]})
