"""Every recipe end to end on small random models: exact transforms, what gets quantized, the
artifact round trip, the paper's predicted ordering on a model with an outlier channel, bad inputs."""

from __future__ import annotations

import json

import pytest
import torch

from mq_deploy.errors import MQDeployError
from mq_deploy.models import MambaConfig, MambaLM
from mq_deploy.quant.artifact import load_quantized, save_quantized
from mq_deploy.quant.config import QuantConfig
from mq_deploy.quant.modules import DynamicActivationQuantizer, StaticActivationQuantizer
from mq_deploy.quant.quantize import quantize
from mq_deploy.quant.recipes import RECIPES

# Hadamard-friendly sizes: d_model 48 = 12*4, d_inner 96 = 12*8, dt_rank 12
SIZES = dict(vocab=256, hidden=48, layers=2, state=8, rank=12)


@pytest.fixture(scope="module")
def model_and_calib():
    from conftest import random_mamba_lm, token_windows
    return (random_mamba_lm(**SIZES, seed=5), *token_windows(0, (6, 64), (2, 48)))


def rel_err(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_transforms_are_exact_and_quantization_is_installed(model_and_calib, recipe, tmp_path):
    model, calib, ids = model_and_calib
    qm = quantize(model, recipe, calib, QuantConfig(), progress=False)
    with torch.no_grad():
        fp = model(ids)
        quantized = qm.model(ids)
    # the transformed FP model (same weights and online transforms, no rounding) is the FP function
    save_quantized(qm, tmp_path / "art")
    transformed = load_quantized(tmp_path / "art", with_quantizers=False).model
    with torch.no_grad():
        assert rel_err(transformed(ids), fp) < 1e-4
    # every quantized linear's weight is integer codes times a per-row scale
    for name, spec in qm.weight_specs.items():
        w = qm.model.get_submodule(name).weight.detach().double()
        scale = w.abs().amax(dim=1, keepdim=True) / 127
        codes = w / scale
        assert torch.allclose(codes, codes.round(), atol=1e-3), name
    quantizers = [m for m in qm.model.modules() if isinstance(m, StaticActivationQuantizer)]
    assert len(quantizers) == 4 * SIZES["layers"]
    assert 0 < rel_err(quantized, fp) < 0.2


@pytest.mark.parametrize("recipe", ["rtn", "mambaquant"])
@pytest.mark.parametrize("bits, mode", [((8, 8), "paper"), ((4, 8), "paper"), ((4, 16), "paper")])
def test_bit_settings_and_modes(model_and_calib, recipe, bits, mode):
    model, calib, ids = model_and_calib
    config = QuantConfig(w_bits=bits[0], a_bits=bits[1], mode=mode, group_size=32)
    qm = quantize(model, recipe, calib, config, progress=False)
    dynamic = [m for m in qm.model.modules() if isinstance(m, DynamicActivationQuantizer)]
    static = [m for m in qm.model.modules() if isinstance(m, StaticActivationQuantizer)]
    if bits[1] == 16:
        assert not dynamic and not static
    elif mode == "paper":
        assert len(dynamic) == 4 * SIZES["layers"] and not static
    else:
        assert len(static) == 4 * SIZES["layers"]
    name = "backbone.layers.0.mixer.in_proj"
    if bits[0] == 4:
        group = qm.weight_specs[name].group_size
        assert group == 24        # largest divisor of in_features 48 not above group_size 32
        w = qm.model.get_submodule(name).weight.detach().double().reshape(-1, group)
        assert max(len(torch.unique(row)) for row in w) <= 16     # 4 bits: at most 16 levels per group
    with torch.no_grad():
        assert torch.isfinite(qm.model(ids)).all()


@pytest.mark.parametrize("a_bits", [8, 16])
def test_deploy_int4_takes_tensorrt_blocks_or_stays_fp(a_bits):
    """Deploy mode at 4 bits quantizes what TensorRT runs as a fused INT4 weight-only GEMM: blocks of
    128 along K, or 64 where K only takes that; dt_proj (K = dt_rank) and a K that takes no block
    stay FP, and their inputs get no activation quantizer."""
    torch.manual_seed(0)
    model = MambaLM(MambaConfig(vocab_size=64, hidden_size=192, num_hidden_layers=1, state_size=4,
                                time_step_rank=12)).eval()     # K: in_proj 192, x_proj/out_proj 384, dt_proj 12
    calib = torch.randint(0, 64, (2, 16))
    qm = quantize(model, "rtn", calib, QuantConfig(w_bits=4, a_bits=a_bits), progress=False)
    groups = {name.rsplit(".", 1)[-1]: spec.group_size for name, spec in qm.weight_specs.items()}
    assert groups == {"in_proj": 64, "x_proj": 128, "out_proj": 128}
    static = {n.rsplit(".", 1)[-1] for n, m in qm.model.named_modules() if isinstance(m, StaticActivationQuantizer)}
    assert static == ({"in_proj_input", "x_proj_input", "out_proj_input"} if a_bits == 8 else set())
    assert torch.equal(qm.model.backbone.layers[0].mixer.dt_proj.weight, model.backbone.layers[0].mixer.dt_proj.weight)
    small = MambaLM(MambaConfig(vocab_size=64, hidden_size=48, num_hidden_layers=1, state_size=4)).eval()
    assert quantize(small, "rtn", calib, QuantConfig(w_bits=4, a_bits=16), progress=False).weight_specs == {}
    with pytest.raises(MQDeployError, match="blocks of 128 or 64"):
        QuantConfig(w_bits=4, a_bits=16, group_size=32)
    assert QuantConfig(w_bits=4, a_bits=16, group_size=32, mode="paper").weight_spec(48, "dt_proj").group_size == 24


def test_artifact_round_trip_is_bit_identical(model_and_calib, tmp_path):
    model, calib, ids = model_and_calib
    for mode in ("deploy", "paper"):
        qm = quantize(model, "mambaquant", calib, QuantConfig(mode=mode), progress=False)
        save_quantized(qm, tmp_path / mode, report={"note": "test"})
        again = load_quantized(tmp_path / mode)
        with torch.no_grad():
            assert torch.equal(again.model(ids), qm.model(ids))
        meta = json.loads((tmp_path / mode / "quant.json").read_text())
        assert meta["recipe"] == "mambaquant" and meta["config"]["mode"] == mode
        kinds = {point: info["kind"] for point, info in meta["online_transforms"].items()}
        # R2 per layer; the tied head stays tied: R1's exit is one online matrix before it, and the
        # artifact stores the embedding once (no lm_head.weight)
        assert kinds == {**{f"backbone.layers.{i}.mixer.out_proj_input": "hadamard" for i in range(SIZES["layers"])},
                         "lm_head_input": "matrix"}
        from safetensors import safe_open
        with safe_open(str(tmp_path / mode / "model.safetensors"), "pt") as f:
            assert "lm_head.weight" not in f.keys() and "backbone.embeddings.weight" in f.keys()
        assert again.model.lm_head.weight is again.model.backbone.embeddings.weight


def test_outlier_channel_ordering_rtn_hadamard_klt():
    """A heavy outlier channel in the normalized residual stream (moved into γ, as real checkpoints
    have it, with in_proj compensating so the FP function is unchanged): per-tensor INT8 suffers,
    a Hadamard spreads the outlier, KLT·H with smoothing does best."""
    from conftest import random_hf_mamba
    hf = random_hf_mamba(vocab=256, hidden=96, layers=2, state=8, rank=12, seed=11)
    model = MambaLM(MambaConfig.from_hf_dict(hf.config.to_dict())).eval()
    model.load_state_dict(hf.state_dict())
    with torch.no_grad():
        for layer in model.backbone.layers:
            for channel, factor in ((7, 60.0), (50, 25.0)):
                layer.norm.weight[channel] *= factor
                layer.mixer.in_proj.weight[:, channel] /= factor
    g = torch.Generator().manual_seed(1)
    calib, ids = torch.randint(0, 256, (8, 96), generator=g), torch.randint(0, 256, (4, 96), generator=g)
    with torch.no_grad():
        fp = model(ids)
        errors = {r: rel_err(quantize(model, r, calib, QuantConfig(), progress=False).model(ids), fp)
                  for r in ("rtn", "quarot", "mambaquant")}
    assert errors["rtn"] > errors["quarot"] > errors["mambaquant"], errors


def test_bad_inputs(model_and_calib, tmp_path):
    model, calib, _ = model_and_calib
    with pytest.raises(MQDeployError, match="unsupported bit widths"):
        QuantConfig(w_bits=3)
    with pytest.raises(MQDeployError, match="unknown recipe"):
        quantize(model, "gptq", calib)
    with pytest.raises(MQDeployError, match="non-empty"):
        quantize(model, "rtn", torch.zeros(0, 0, dtype=torch.long))
    with pytest.raises(MQDeployError, match="outside the model's vocabulary"):
        quantize(model, "rtn", calib + 1000)
    broken = MambaLM(model.config).eval()
    broken.load_state_dict(model.state_dict())
    with torch.no_grad():
        broken.backbone.layers[1].mixer.x_proj.weight[0, 0] = float("nan")
    with pytest.raises(MQDeployError, match="NaN/inf"):
        quantize(broken, "rtn", calib, progress=False)
    odd = MambaLM(MambaConfig(vocab_size=256, hidden_size=40, num_hidden_layers=1, state_size=4)).eval()
    with pytest.raises(MQDeployError, match="quarot cannot be applied"):
        quantize(odd, "quarot", calib, progress=False)


def test_paper_scan_quantizes_only_the_output_contraction():
    from mq_deploy.ops import selective_scan_ref
    from mq_deploy.quant.paper_scan import HcContraction
    g = torch.Generator().manual_seed(0)
    b, length, d, n = 2, 20, 16, 8
    args = dict(x=torch.randn(b, length, d, generator=g), delta=torch.randn(b, length, d, generator=g),
                A=-torch.rand(d, n, generator=g), B=torch.randn(b, length, n, generator=g),
                C=torch.randn(b, length, n, generator=g), D=torch.randn(d, generator=g))
    exact, h_exact = selective_scan_ref(**args, return_final_state=True)
    quantized, h_quantized = selective_scan_ref(**args, return_final_state=True, output_fn=HcContraction())
    assert torch.equal(h_quantized, h_exact)            # the recurrence itself is not quantized
    assert 1e-4 < rel_err(quantized, exact) < 3e-2       # 8-bit operands: visible, small


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipes_that_say_they_draw_signs_are_the_ones_whose_weights_change_with_the_seed(model_and_calib, recipe):
    """compare-recipes runs a recipe at several seeds exactly when `uses_seed` says its result depends on one."""
    from mq_deploy.quant.recipes import uses_seed
    model, calib, _ = model_and_calib
    weights = [quantize(model, recipe, calib, QuantConfig(seed=seed), progress=False).model.state_dict()
               for seed in (0, 1)]
    differs = any(not torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert differs == uses_seed(recipe)


def test_mambaquant_r1_hadamard_is_the_signed_hadamard_alone_and_exact(model_and_calib):
    """--r1 hadamard (the KLT ablation): the residual stream is rotated by the seed's signed Hadamard
    alone, the transform stays exact in float64, and the default is the paper's K·H (not that)."""
    import copy

    from mq_deploy.quant.recipes import get_recipe
    from mq_deploy.quant.transforms import random_signs, signed_hadamard_matrix
    model, calib, ids = model_and_calib
    fp = copy.deepcopy(model).double().eval()
    rotations = {}
    for r1 in ("klt", "hadamard"):
        work = copy.deepcopy(fp)
        get_recipe("mambaquant").transform(work, calib, QuantConfig(calib_dtype="float64", r1=r1, seed=3),
                                           progress=False)
        with torch.no_grad():
            assert rel_err(work(ids), fp(ids)) < 1e-10, r1
        # the embedding carries R1 alone (γ folds into the linears after the norms, not into it)
        rotations[r1] = torch.linalg.lstsq(fp.backbone.embeddings.weight.detach(),
                                           work.backbone.embeddings.weight.detach()).solution
    hadamard = signed_hadamard_matrix(random_signs(SIZES["hidden"], 3, torch.float64))
    assert torch.allclose(rotations["hadamard"], hadamard, atol=1e-8)
    assert (rotations["klt"] - hadamard).abs().max() > 0.1
    assert torch.allclose(rotations["klt"] @ rotations["klt"].T, torch.eye(SIZES["hidden"], dtype=torch.float64),
                          atol=1e-8)
    with pytest.raises(MQDeployError, match="--r1 hadamard is MambaQuant's choice"):
        quantize(model, "quarot", calib, QuantConfig(r1="hadamard"), progress=False)
    with pytest.raises(MQDeployError, match="unknown R1 rotation 'pca'"):
        QuantConfig(r1="pca")


@pytest.mark.parametrize("bits, smoothing, smoothed", [
    ((8, 8), "quantized-activations", True), ((4, 8), "quantized-activations", True),
    ((4, 16), "quantized-activations", False),
    ((4, 16), "always", True), ((8, 8), "never", False)])     # the ablation switch (benchmarks/)
def test_mambaquant_smooths_only_where_activations_are_quantized(model_and_calib, bits, smoothing, smoothed,
                                                                 monkeypatch):
    """S7 rescales the depthwise conv's channels (and S2 the gate, S5 the dt bottleneck): at 16-bit
    activations MambaQuant leaves them out, so the conv weights are the FP model's bit for bit, while
    the transform stays exact either way."""
    import copy

    import mq_deploy.quant.recipes.mambaquant as mambaquant
    from mq_deploy.quant.recipes import get_recipe
    monkeypatch.setattr(mambaquant, "SMOOTHING", smoothing)
    model, calib, ids = model_and_calib
    fp = copy.deepcopy(model).double().eval()
    work = copy.deepcopy(fp)
    get_recipe("mambaquant").transform(work, calib, QuantConfig(w_bits=bits[0], a_bits=bits[1], calib_dtype="float64"),
                                       progress=False)
    with torch.no_grad():
        assert rel_err(work(ids), fp(ids)) < 1e-10
    for i in range(SIZES["layers"]):
        same = torch.equal(work.backbone.layers[i].mixer.conv1d.weight, fp.backbone.layers[i].mixer.conv1d.weight)
        assert same != smoothed, i


def test_mambaquant_smoothing_switch_refuses_an_unknown_value(monkeypatch):
    import mq_deploy.quant.recipes.mambaquant as mambaquant
    monkeypatch.setattr(mambaquant, "SMOOTHING", "sometimes")
    with pytest.raises(ValueError, match="SMOOTHING = 'sometimes'"):
        mambaquant._smoothing_scales(torch.ones(3), torch.ones(3), QuantConfig())
