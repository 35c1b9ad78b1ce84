"""Paper mode's h·C contraction and MambaQuant's smooth-fused rotation there (S4 + R4,
quant/paper_scan.py): the contraction against a per-step quantizer and a Hadamard written here, S4's
balance, the transforms exact in float64 on Mamba-1 (Mamba-2: tests/test_quant_mamba2.py), the
error they take away from a planted outlier state, and the artifact round trip."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from mq_deploy.quant.artifact import load_quantized, save_quantized
from mq_deploy.quant.config import QuantConfig
from mq_deploy.quant.paper_scan import HcContraction, install_paper_scan, s4_scale, set_contraction_transform
from mq_deploy.quant.quantize import quantize
from mq_deploy.quant.recipes import get_recipe

SIZES = dict(vocab=256, hidden=48, layers=2, state=16, rank=12)


def rel(a, b):
    return ((a - b).norm() / b.norm()).item()


def sylvester(n: int) -> torch.Tensor:
    """The normalized Sylvester Hadamard matrix of order n (a power of 2), built here."""
    h = torch.ones(1, 1, dtype=torch.float64)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h / n ** 0.5


def fake_quant_8bit_asymmetric(x: torch.Tensor) -> torch.Tensor:
    """One range over the whole tensor: 256 levels from min to max, zero point rounded (the paper's
    quantizer, reference notes §2.1), written out here."""
    lo, hi = x.min(), x.max()
    scale = ((hi - lo) / 255).clamp(1e-5, 1e4)
    zero = torch.round(-lo / scale)
    return (torch.clamp(torch.round(x / scale) + zero, 0, 255) - zero) * scale


@pytest.mark.parametrize("layout", ["mamba1", "mamba2"])
def test_contraction_is_the_per_step_quantized_product_of_the_transformed_operands(layout):
    g = torch.Generator().manual_seed(0)
    n = 16
    if layout == "mamba1":
        h, c = torch.randn(3, 24, n, generator=g, dtype=torch.float64), torch.randn(3, n, generator=g, dtype=torch.float64)
        s = torch.rand(n, generator=g, dtype=torch.float64) + 0.5
    else:               # 4 heads of 8 channels; C repeated per head as the SSD scan hands it over
        h = torch.randn(3, 4, 8, n, generator=g, dtype=torch.float64)
        c = torch.randn(3, 2, n, generator=g, dtype=torch.float64).repeat_interleave(2, dim=1)
        s = (torch.rand(2, n, generator=g, dtype=torch.float64) + 0.5).repeat_interleave(2, dim=0)
    signs = torch.randint(0, 2, (n,), generator=g).double() * 2 - 1
    q = signs[:, None] * sylvester(n)
    s3 = torch.rand(h.shape[1:-1], generator=g, dtype=torch.float64) + 0.5      # one per channel of h
    exact = (h * c.unsqueeze(-2)).sum(-1)
    h_t, c_t = (h / s.unsqueeze(-2)) @ q, (c * s) @ q                            # S4 + R4
    expected = (fake_quant_8bit_asymmetric(h_t) * fake_quant_8bit_asymmetric(c_t).unsqueeze(-2)).sum(-1)
    got = HcContraction(s, signs)(h, c)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    assert 1e-4 < rel(got, exact) < 3e-2
    h_t, c_t = (h / s3.unsqueeze(-1)) @ q, c @ q                                # S3 + R4
    expected = (fake_quant_8bit_asymmetric(h_t) * fake_quant_8bit_asymmetric(c_t).unsqueeze(-2)).sum(-1) * s3
    torch.testing.assert_close(HcContraction(None, signs, s3)(h, c), expected, rtol=1e-12, atol=1e-12)
    # without quantization the transforms change nothing
    assert rel(HcContraction(s, signs, s3, quantize=False)(h, c), exact) < 1e-14


def test_s4_gives_both_operands_the_same_maximum_per_state_and_one_scale_per_group():
    g = torch.Generator().manual_seed(1)
    h_max = torch.rand(4, 16, generator=g, dtype=torch.float64) * 10     # [heads, N]
    c_max = torch.rand(2, 16, generator=g, dtype=torch.float64).repeat_interleave(2, dim=0)
    s = s4_scale(h_max[0], c_max[0])
    torch.testing.assert_close(h_max[0] / s, c_max[0] * s)
    grouped = s4_scale(h_max, c_max, groups=2)
    assert torch.equal(grouped[0], grouped[1]) and torch.equal(grouped[2], grouped[3])
    group_h = torch.maximum(h_max[0], h_max[1])
    torch.testing.assert_close(group_h / grouped[0], c_max[0] * grouped[0])
    # a state that never moves keeps s = 1; the paper's clamp bounds the rest
    h_max[0, 0], c_max[0, 1] = 0.0, 1e-12
    s = s4_scale(h_max[0], c_max[0])
    assert s[0] == 1.0 and s[1] == 100.0


@pytest.fixture(scope="module")
def model_and_calib():
    from conftest import random_mamba_lm, token_windows
    return (random_mamba_lm(**SIZES, seed=3), *token_windows(0, (6, 64), (2, 48)))


def test_paper_mambaquant_transforms_are_exact_in_float64(model_and_calib):
    """Every paper-mode transform, S4 + R4 at the contraction included, keeps the float64 logits."""
    model, calib, ids = model_and_calib
    fp = copy.deepcopy(model).double()
    work = copy.deepcopy(fp)
    get_recipe("mambaquant").transform(work, calib, QuantConfig(mode="paper", calib_dtype="float64"), progress=False)
    install_paper_scan(work, quantize=False)
    for layer in work.backbone.layers:      # ... and it did something (s = 1, no signs would keep them too)
        assert layer.mixer.hc_signs.abs().eq(1).all() and (layer.mixer.hc_scale - 1).abs().max() > 0.1
    with torch.no_grad():
        assert rel(work(ids), fp(ids)) <= 1e-10
    deploy = copy.deepcopy(fp)       # deploy mode never quantizes the contraction, so has no S4 / R4
    get_recipe("mambaquant").transform(deploy, calib, QuantConfig(calib_dtype="float64"), progress=False)
    assert getattr(deploy.backbone.layers[0].mixer, "hc_scale", None) is None


def with_outlier_state(model, factor=30.0):
    """A copy whose state 5 of every layer's C is `factor` times larger and its B as much smaller:
    the same function (h_5 shrinks as C_5 grows), with one outlier state at the contraction."""
    planted = copy.deepcopy(model)
    with torch.no_grad():
        for layer in planted.backbone.layers:
            mixer = layer.mixer
            rank, n = mixer.dt_rank, mixer.d_state
            mixer.x_proj.weight[rank + 5] /= factor                # B's state 5
            mixer.x_proj.weight[rank + n + 5] *= factor            # C's state 5
    return planted


def contraction_error(model, ids, transforms: bool = True) -> float:
    """How far the paper-mode `model`'s logits move when its h·C contraction is quantized (with or
    without its S4 + R4), against the same model with that contraction exact."""
    exact, quantized = copy.deepcopy(model), copy.deepcopy(model)
    install_paper_scan(exact, quantize=False)
    if not transforms:
        for layer in quantized.backbone.layers:
            set_contraction_transform(layer.mixer, "")             # every transform removed
    install_paper_scan(quantized)
    with torch.no_grad():
        return rel(quantized(ids), exact(ids))


def test_s4_r4_take_the_contraction_error_of_an_outlier_state_away(model_and_calib):
    model, calib, ids = model_and_calib
    planted = with_outlier_state(model)
    with torch.no_grad():
        assert rel(planted(ids), model(ids)) < 1e-5
    config = QuantConfig(mode="paper")
    plain = quantize(model, "mambaquant", calib, config, progress=False).model
    outlier = quantize(planted, "mambaquant", calib, config, progress=False).model
    # S4 moves the planted scale back (s grows by the factor at that state): the contraction the
    # quantizer sees is the unplanted model's
    assert contraction_error(outlier, ids) == pytest.approx(contraction_error(plain, ids), rel=0.01)
    assert contraction_error(outlier, ids) < 0.7 * contraction_error(outlier, ids, transforms=False)


def test_paper_artifact_keeps_s4_r4(model_and_calib, tmp_path):
    model, calib, ids = model_and_calib
    qm = quantize(model, "mambaquant", calib, QuantConfig(mode="paper", w_bits=4, a_bits=8, group_size=32),
                  progress=False)
    save_quantized(qm, tmp_path / "art")
    assert json.loads((tmp_path / "art" / "quant.json").read_text())["contraction_transform_layers"] == [0, 1]
    loaded = load_quantized(tmp_path / "art")
    for new, old in zip(loaded.model.backbone.layers, qm.model.backbone.layers):
        assert torch.equal(new.mixer.hc_scale, old.mixer.hc_scale) and torch.equal(new.mixer.hc_signs, old.mixer.hc_signs)
    with torch.no_grad():
        assert torch.equal(loaded.model(ids), qm.model(ids))
        # the transformed FP model (no quantizers) runs the FP scan: the same function
        assert rel(load_quantized(tmp_path / "art", with_quantizers=False).model(ids), model(ids)) < 1e-4


def test_recording_keeps_the_maxima_s4_and_s3_are_computed_from():
    g = torch.Generator().manual_seed(4)
    steps = [(torch.randn(2, 4, 3, 8, generator=g), torch.randn(2, 4, 8, generator=g)) for _ in range(5)]
    recorder = HcContraction(quantize=False, record=True)
    for h, c in steps:
        recorder(h, c)
    hs, cs = torch.stack([h for h, _ in steps]).abs(), torch.stack([c for _, c in steps]).abs()
    assert torch.equal(recorder.h_absmax, hs.amax(dim=(0, 1, 3)))          # per (head, state)
    assert torch.equal(recorder.c_absmax, cs.amax(dim=(0, 1)))
    assert torch.equal(recorder.h_channel_absmax, hs.amax(dim=(0, 1, 4)))  # per (head, channel)


def test_a_state_size_without_a_hadamard_is_one_error_before_calibration():
    from conftest import random_mamba_lm, token_windows
    from mq_deploy.errors import MQDeployError
    model = random_mamba_lm(**{**SIZES, "state": 10}, seed=1)
    calib, = token_windows(0, (2, 16))
    with pytest.raises(MQDeployError, match="R4 rotates the 10 SSM states.*deploy mode"):
        quantize(model, "mambaquant", calib, QuantConfig(mode="paper"), progress=False)
    quantize(model, "mambaquant", calib, QuantConfig(), progress=False)      # deploy mode has no R4
