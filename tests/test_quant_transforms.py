"""The MambaQuant folds leave a model's logits unchanged, each alone in float64 (relative error
<= 1e-10) and float32 (<= 1e-4) and moving its activation the way the math says; the shipped recipes
(mq_deploy/quant/recipes/*.py, called as `quantize` calls them) keep the logits to <= 1e-10 in
float64; and each fix over the official MambaQuant code has a regression test."""

from __future__ import annotations

import pytest
import torch

from mq_deploy.models import MambaConfig, MambaLM
from mq_deploy.quant.transforms import (HadamardRotation, fold_rmsnorm_weights,
                                        klt_hadamard_rotation, online_hadamard_before_out_proj, random_signs,
                                        rotate_dt_bottleneck, rotate_residual_stream, signed_hadamard_matrix,
                                        smooth_conv_input, smooth_dt_bottleneck, smooth_gate_s_silu,
                                        smoothquant_scales, weight_input_absmax)

# A float64 model computes in float64 end to end, so the folds must be exact to rounding there.
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-4}
# Sizes the Hadamard supports: d_model 48 = 12*4, d_inner 96 = 12*8, dt_rank 12; d_model 64 with
# rank 4 and biases on in_proj / out_proj / x_proj (the last as a reduce_mean shift would add).
CONFIGS = {
    "d48": dict(hidden=48, layers=2, state=8, rank=12, vocab=97),
    "d64-bias": dict(hidden=64, layers=2, state=4, rank=4, vocab=61, use_bias=True, use_conv_bias=False),
}


def build_model(hf_mamba_factory, name: str, dtype: torch.dtype) -> MambaLM:
    hf = hf_mamba_factory(**CONFIGS[name])
    model = MambaLM(MambaConfig.from_hf_dict(hf.config.to_dict()))
    model.load_state_dict(hf.state_dict())
    if CONFIGS[name].get("use_bias"):
        g = torch.Generator().manual_seed(7)
        for layer in model.backbone.layers:
            x_proj = layer.mixer.x_proj
            x_proj.bias = torch.nn.Parameter(0.3 * torch.randn(x_proj.out_features, generator=g))
    return model.to(dtype).eval()


def token_ids(vocab: int, shape=(2, 24)) -> torch.Tensor:
    return torch.randint(0, vocab, shape, generator=torch.Generator().manual_seed(1))


def rel_err(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual.double() - expected.double()).abs().max() / expected.double().abs().max()).item()


def run_and_capture(model: MambaLM, ids: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Logits (lm_head's output) and the output of every activation point (an ActivationPoint or the
    rotation module put in its place), flattened to [tokens, channels] float64."""
    points = {name: module for name, module in model.named_modules() if name.endswith("_input")}
    points["lm_head"] = model.lm_head
    captured = {}
    hooks = [module.register_forward_hook(
        lambda _m, _i, out, name=name: captured.__setitem__(name, out.detach().double().reshape(-1, out.shape[-1])))
        for name, module in points.items()]
    with torch.no_grad():
        model(ids)
    for hook in hooks:
        hook.remove()
    return captured.pop("lm_head"), captured


def mixer_point(layer: int, name: str) -> str:
    return f"backbone.layers.{layer}.mixer.{name}"


def positive_scales(n: int, seed: int) -> torch.Tensor:
    """Log-uniform in [e^-2, e^2]: far from 1, so a wrong fold shows."""
    return torch.exp(4 * torch.rand(n, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)) - 2)


# ---- each transform on every layer; returns {point: expected new activation from the old one} ----

def apply_fold(model, old):
    gammas = [layer.norm.weight.detach().double().clone() for layer in model.backbone.layers]
    fold_rmsnorm_weights(model)
    return {mixer_point(i, "in_proj_input"): (lambda a, g=g: a / g) for i, g in enumerate(gammas)}


def apply_s2(model, old):
    expected = {}
    for i, layer in enumerate(model.backbone.layers):
        s = positive_scales(layer.mixer.d_inner, seed=i)
        smooth_gate_s_silu(layer.mixer, s)
        expected[mixer_point(i, "out_proj_input")] = lambda a, s=s: a / s
    return expected


def apply_r2(model, old):
    expected = {}
    for i, layer in enumerate(model.backbone.layers):
        signs = random_signs(layer.mixer.d_inner, seed=i)
        online_hadamard_before_out_proj(layer.mixer, signs)
        expected[mixer_point(i, "out_proj_input")] = lambda a, m=signed_hadamard_matrix(signs): a @ m
    return expected


def apply_s5(model, old):
    expected = {}
    for i, layer in enumerate(model.backbone.layers):
        s = positive_scales(layer.mixer.dt_rank, seed=10 + i)
        smooth_dt_bottleneck(layer.mixer, s)
        expected[mixer_point(i, "dt_proj_input")] = lambda a, s=s: a / s
    return expected


def apply_s7(model, old):
    expected = {}
    for i, layer in enumerate(model.backbone.layers):
        s = positive_scales(layer.mixer.d_inner, seed=20 + i)
        smooth_conv_input(layer.mixer, s)
        expected[mixer_point(i, "conv_input")] = lambda a, s=s: a / s
    return expected


def apply_r1(model, old):
    gammas = [layer.norm.weight.detach().double().clone() for layer in model.backbone.layers]
    r1 = klt_hadamard_rotation(torch.cov(old[mixer_point(0, "in_proj_input")].T), seed=0)
    fold_rmsnorm_weights(model)
    rotate_residual_stream(model, r1)
    return {mixer_point(i, "in_proj_input"): (lambda a, g=g: (a / g) @ r1) for i, g in enumerate(gammas)}


def apply_r5(model, old):
    expected = {}
    for i, layer in enumerate(model.backbone.layers):
        r5 = klt_hadamard_rotation(torch.cov(old[mixer_point(i, "dt_proj_input")].T), seed=30 + i)
        rotate_dt_bottleneck(layer.mixer, r5)
        expected[mixer_point(i, "dt_proj_input")] = lambda a, r=r5: a @ r
    return expected


TRANSFORMS = {"fold_gamma": apply_fold, "S2": apply_s2, "R2": apply_r2, "S5": apply_s5, "S7": apply_s7,
              "R1": apply_r1, "R5": apply_r5}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["fp64", "fp32"])
@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("transform", list(TRANSFORMS))
def test_each_transform_keeps_logits_and_moves_its_activation(hf_mamba_factory, transform, config, dtype):
    model = build_model(hf_mamba_factory, config, dtype)
    tolerance = TOLERANCE[dtype]
    ids = token_ids(model.config.vocab_size)
    logits, old = run_and_capture(model, ids)
    expected = TRANSFORMS[transform](model, old)
    new_logits, new = run_and_capture(model, ids)
    assert rel_err(new_logits, logits) <= tolerance
    for point, relation in expected.items():   # e.g. R5: the new dt_proj input is the old one @ R5
        assert rel_err(new[point], relation(old[point])) <= tolerance, point


# ---- the shipped recipes, called as `quantize` calls them ----

def calibration_ids(vocab: int) -> torch.Tensor:
    return torch.randint(0, vocab, (6, 32), generator=torch.Generator().manual_seed(2))


def transformed_by(recipe: str, model: MambaLM, calib: torch.Tensor) -> MambaLM:
    """A copy of the float64 `model` after recipes/<recipe>.py's transform (what `quantize` runs
    before any rounding), with float64 calibration forwards: these tests recompute the statistics
    exactly."""
    import copy

    from mq_deploy.quant.config import QuantConfig
    from mq_deploy.quant.recipes import get_recipe
    work = copy.deepcopy(model)
    get_recipe(recipe).transform(work, calib, QuantConfig(calib_dtype="float64"), progress=False)
    return work


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("recipe", ["rtn", "smoothquant", "quarot", "quamba", "mambaquant"])
def test_shipped_recipes_keep_the_logits_in_float64(hf_mamba_factory, recipe, config):
    model = build_model(hf_mamba_factory, config, torch.float64)
    ids = token_ids(model.config.vocab_size)
    logits, _ = run_and_capture(model, ids)
    work = transformed_by(recipe, model, calibration_ids(model.config.vocab_size))
    assert rel_err(run_and_capture(work, ids)[0], logits) <= 1e-10


def test_mambaquant_keeps_the_demo_model_logits_in_float64():
    from mq_deploy.errors import MQDeployError
    from mq_deploy.models.loading import load_model
    from mq_deploy.samples import demo_model_dir
    try:
        path = demo_model_dir()
    except MQDeployError as error:
        pytest.skip(f"no bundled demo model yet: {error}")
    model = load_model(path, dtype=torch.float64).model
    text = b"The quick brown fox jumps over the lazy dog; Mamba is a selective state space model. " * 2
    ids = torch.tensor([list(text[:80]), list(text[80:160])])
    logits, _ = run_and_capture(model, ids)
    work = transformed_by("mambaquant", model, torch.tensor([list(text[i:i + 32]) for i in range(0, 128, 32)]))
    assert rel_err(run_and_capture(work, ids)[0], logits) <= 1e-10


# ---- regression tests of the fixes over the official MambaQuant code (docs/quantization.md) ----

def test_mambaquant_statistics_come_from_the_fp_model_with_quantization_off(hf_mamba_factory):
    """R1 and the S2 scales the recipe applied are recomputed here from the untouched FP model's own
    activations: R1 = K·H of the γ-free normalized residual's covariance (pooled over the layers),
    S2 = SmoothQuant(α=0.5) of the out_proj input. Statistics gathered with quantizers on (as the
    official code does) give other values."""
    from mq_deploy.quant.config import QuantConfig
    model = build_model(hf_mamba_factory, "d48", torch.float64)
    calib = calibration_ids(model.config.vocab_size)
    _, fp = run_and_capture(model, calib)
    work = transformed_by("mambaquant", model, calib)
    layers = model.backbone.layers
    covariances = [torch.cov((fp[mixer_point(i, "in_proj_input")] / layer.norm.weight.double()).T)
                   for i, layer in enumerate(layers)]
    expected_r1 = klt_hadamard_rotation(sum(covariances) / len(layers), seed=QuantConfig().seed)
    embedding = model.backbone.embeddings.weight.detach().double()
    r1 = torch.linalg.lstsq(embedding, work.backbone.embeddings.weight.detach().double()).solution
    assert rel_err(r1, expected_r1) <= 1e-8
    for i, layer in enumerate(layers):
        s2 = smoothquant_scales(fp[mixer_point(i, "out_proj_input")].abs().amax(dim=0),
                                weight_input_absmax(layer.mixer.out_proj.weight), alpha=0.5)
        assert rel_err(work.backbone.layers[i].mixer.gate_scale, s2) <= 1e-12, i


def test_mambaquant_r5_aligns_every_layers_dt_variances(hf_mamba_factory):
    """After the recipe, each layer's dt_proj input (S5 then R5 = K·H) has every channel variance
    equal to the mean eigenvalue, on the calibration data itself. Fails for the official code's
    transposed fold (t·R5ᵀ) and for one stale K shared by all layers instead of each layer's own."""
    model = build_model(hf_mamba_factory, "d48", torch.float64)
    calib = calibration_ids(model.config.vocab_size)
    work = transformed_by("mambaquant", model, calib)
    _, new = run_and_capture(work, calib)
    for i in range(len(work.backbone.layers)):
        variances = torch.var(new[mixer_point(i, "dt_proj_input")], dim=0)
        spread = ((variances.max() - variances.min()) / variances.mean()).item()
        assert spread < 1e-9, (i, spread)
    _, old = run_and_capture(model, calib)       # and without R5 the channels were far from even
    assert torch.var(old[mixer_point(0, "dt_proj_input")], dim=0).std() > 0.1 * \
        torch.var(old[mixer_point(0, "dt_proj_input")], dim=0).mean()


# ---- bookkeeping and composition ----

def test_fold_unties_lm_head_and_leaves_the_embedding(hf_mamba_factory):
    model = build_model(hf_mamba_factory, "d48", torch.float64)
    assert model.lm_head.weight is model.backbone.embeddings.weight
    embedding = model.backbone.embeddings.weight.detach().clone()
    fold_rmsnorm_weights(model)
    assert model.lm_head.weight is not model.backbone.embeddings.weight
    assert model.config.tie_word_embeddings is False
    assert torch.equal(model.backbone.embeddings.weight, embedding)
    assert all(torch.all(layer.norm.weight == 1) for layer in model.backbone.layers)
    assert torch.all(model.backbone.norm_f.weight == 1)


def test_s2_composes_with_an_existing_gate_scale(hf_mamba_factory):
    model = build_model(hf_mamba_factory, "d48", torch.float64)
    ids = token_ids(model.config.vocab_size)
    logits, old = run_and_capture(model, ids)
    mixer = model.backbone.layers[1].mixer
    first, second = positive_scales(96, seed=1), positive_scales(96, seed=2)
    smooth_gate_s_silu(mixer, first)
    smooth_gate_s_silu(mixer, second)
    torch.testing.assert_close(mixer.gate_scale, first * second, rtol=1e-15, atol=0)
    assert "gate_scale" not in model.state_dict() and "backbone.layers.1.mixer.gate_scale" not in model.state_dict()
    new_logits, new = run_and_capture(model, ids)
    assert rel_err(new_logits, logits) <= 1e-6
    point = mixer_point(1, "out_proj_input")
    assert rel_err(new[point], old[point] / (first * second)) <= 1e-6


def test_r2_installs_a_hadamard_rotation_once(hf_mamba_factory):
    model = build_model(hf_mamba_factory, "d48", torch.float64)
    mixer = model.backbone.layers[0].mixer
    online_hadamard_before_out_proj(mixer, random_signs(96, seed=0))
    assert isinstance(mixer.out_proj_input, HadamardRotation)
    with pytest.raises(ValueError, match="already holds HadamardRotation"):
        online_hadamard_before_out_proj(mixer, random_signs(96, seed=1))


def test_bad_arguments_are_clear_errors(hf_mamba_factory):
    model = build_model(hf_mamba_factory, "d48", torch.float64)
    mixer = model.backbone.layers[0].mixer
    with pytest.raises(ValueError, match=r"layers.0.norm.weight \(γ\) is not folded.*fold_rmsnorm_weights"):
        rotate_residual_stream(model, torch.eye(48))
    fold_rmsnorm_weights(model)
    with pytest.raises(ValueError, match=r"R1 must be \[48, 48\]"):
        rotate_residual_stream(model, torch.eye(64))
    with pytest.raises(ValueError, match="R1 is not orthogonal"):
        rotate_residual_stream(model, 2 * torch.eye(48))
    with pytest.raises(ValueError, match=r"R5 must be \[12, 12\]"):
        rotate_dt_bottleneck(mixer, torch.eye(8))
    with pytest.raises(ValueError, match=r"S2: the smoothing vector must be \[96\]"):
        smooth_gate_s_silu(mixer, torch.ones(48))
    with pytest.raises(ValueError, match=r"S5: the smoothing vector must be \[12\]"):
        smooth_dt_bottleneck(mixer, torch.ones(96))
    with pytest.raises(ValueError, match="S7: smoothing scales must be finite and > 0"):
        smooth_conv_input(mixer, -torch.ones(96))
    with pytest.raises(ValueError, match=r"R2: signs must be \[96\]"):
        online_hadamard_before_out_proj(mixer, torch.ones(48))
