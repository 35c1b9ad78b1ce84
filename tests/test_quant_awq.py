"""AWQ-style scale search (quant/awq.py) and its folds in quantize(): the search picks the grid point
whose output error, computed here from the activations themselves (not from their second moment),
is least; the folds leave the FP function unchanged; the artifact and its export reproduce the model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mq_deploy.errors import MQDeployError
from mq_deploy.models import MambaConfig, MambaLM
from mq_deploy.quant.artifact import load_quantized, save_quantized
from mq_deploy.quant.awq import GRID, SEARCH_ROWS, channel_scales, search_scales
from mq_deploy.quant.config import QuantConfig
from mq_deploy.quant.quantize import quantize
from mq_deploy.quant.quantizer import QuantSpec

INT4 = QuantSpec(4, True, "group", group_size=64)


def rtn_int4(w: np.ndarray, block: int = 64) -> np.ndarray:
    """Symmetric 4-bit round-to-nearest in blocks of `block` along K, float64, written out."""
    g = w.reshape(w.shape[0], -1, block)
    scale = np.maximum(np.abs(g).max(axis=2, keepdims=True) / 7, 1e-12)
    return (np.clip(np.round(g / scale), -8, 7) * scale).reshape(w.shape)


def error_from_activations(w: np.ndarray, x: np.ndarray, s: np.ndarray) -> float:
    """mean over tokens of ||x·(Q(W·diag s)·diag(1/s) − W)ᵀ||², from the tokens x [n, K]."""
    delta = rtn_int4(w * s) / s - w
    return float(((x @ delta.T) ** 2).sum() / x.shape[0])


def outlier_problem(rows: int, k: int = 256, n: int = 2048, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, k)) * np.where(np.arange(k) % 37 == 3, 25.0, 1.0)     # a few outlier channels
    w = rng.normal(size=(rows, k)) * 0.05
    return w, x, torch.from_numpy(x.T @ x / n)


def test_search_picks_the_least_error_on_the_grid():
    w, x, h = outlier_problem(rows=96)
    s, alpha, errors = search_scales(torch.from_numpy(w).float(), h, INT4)
    by_tokens = [error_from_activations(w, x, channel_scales(h, k / GRID).numpy()) for k in range(GRID + 1)]
    np.testing.assert_allclose(errors, by_tokens, rtol=1e-4)           # H's form of the error is the error
    assert by_tokens[round(alpha * GRID)] <= min(by_tokens) * (1 + 1e-4)
    assert alpha > 0 and by_tokens[round(alpha * GRID)] < 0.8 * by_tokens[0]   # outliers: scaling pays
    assert torch.equal(s, channel_scales(h, alpha))
    assert float(s.max() * s.min()) == pytest.approx(1.0, rel=1e-12)


def test_uncorrelated_equal_channels_need_no_scaling():
    rng = np.random.default_rng(1)
    w = torch.from_numpy(rng.normal(size=(32, 128)))
    s, alpha, _ = search_scales(w, torch.eye(128, dtype=torch.float64), INT4)
    assert torch.allclose(s, torch.ones(128, dtype=torch.float64))      # every α gives s = 1: the first wins
    assert alpha == 0.0


def test_row_sampling_of_a_tall_weight_still_finds_a_near_best_scale():
    w, x, h = outlier_problem(rows=SEARCH_ROWS * 3, n=1024, seed=2)
    _, alpha, _ = search_scales(torch.from_numpy(w).float(), h, INT4)
    full = [error_from_activations(w, x, channel_scales(h, k / GRID).numpy()) for k in range(GRID + 1)]
    assert full[round(alpha * GRID)] <= min(full) * 1.01


@pytest.fixture(scope="module")
def model_and_calib():
    from conftest import random_hf_mamba, token_windows
    hf = random_hf_mamba(vocab=256, hidden=64, layers=2, state=8, seed=7)   # K 64 / 128: INT4 blocks
    model = MambaLM(MambaConfig.from_hf_dict(hf.config.to_dict())).eval()
    model.load_state_dict(hf.state_dict())
    return (model, *token_windows(0, (6, 64), (4, 48)))


@pytest.mark.parametrize("recipe", ["rtn", "smoothquant", "quarot", "quamba", "mambaquant"])
def test_folds_are_exact_and_the_artifact_reproduces_the_model(model_and_calib, recipe, tmp_path):
    model, calib, ids = model_and_calib
    qm = quantize(model, recipe, calib, QuantConfig(w_bits=4, weight_scales="awq", weight_rounding="rtn"),
                  progress=False)
    art = save_quantized(qm, tmp_path / "awq")
    with torch.no_grad():
        fp, q = model(ids).double(), qm.model(ids)
        transformed = load_quantized(art, with_quantizers=False).model(ids).double()
        reloaded = load_quantized(art).model(ids)
    assert ((transformed - fp).norm() / fp.norm()).item() < 1e-6        # AWQ's folds keep the FP function
    assert torch.equal(reloaded, q)
    # the scales went where they fold: in_proj and x_proj always, out_proj only without an online Hadamard
    hadamard = recipe in ("quarot", "quamba", "mambaquant")
    assert set(qm.awq_alpha) == {f"backbone.layers.{i}.mixer.{leaf}" for i in range(2)
                                 for leaf in ("in_proj", "x_proj") + (() if hadamard else ("out_proj",))}
    assert all(qm.online_transforms[f"backbone.layers.{i}.mixer.x_proj_input"] == "scale" for i in range(2))


def test_an_outlier_channel_gets_scaled_and_folded_into_the_norm(model_and_calib):
    model, calib, ids = model_and_calib
    spiky = MambaLM(model.config).eval()
    spiky.load_state_dict(model.state_dict())
    with torch.no_grad():
        spiky.backbone.layers[0].norm.weight[5] *= 30.0           # in_proj's input channel 5: an outlier
    qm = quantize(spiky, "rtn", calib, QuantConfig(w_bits=4, weight_scales="awq", weight_rounding="rtn"),
                  progress=False)
    plain = quantize(spiky, "rtn", calib, QuantConfig(w_bits=4, weight_rounding="rtn"), progress=False)
    assert qm.awq_alpha["backbone.layers.0.mixer.in_proj"] > 0
    gamma = qm.model.backbone.layers[0].norm.weight
    assert gamma[5] < spiky.backbone.layers[0].norm.weight[5]       # the outlier divided down in the norm
    with torch.no_grad():
        fp = spiky(ids)
        err = {name: ((m.model(ids) - fp).norm() / fp.norm()).item() for name, m in (("awq", qm), ("rtn", plain))}
    assert err["awq"] < err["rtn"], err


@pytest.mark.parametrize("recipe", ["smoothquant", "mambaquant"])
def test_with_gptq_the_artifact_reloads_bit_exact(model_and_calib, recipe, tmp_path):
    model, calib, ids = model_and_calib
    qm = quantize(model, recipe, calib, QuantConfig(w_bits=4, weight_scales="awq"), progress=False)
    assert qm.config.weight_rounding == "gptq"
    with torch.no_grad():
        assert torch.equal(load_quantized(save_quantized(qm, tmp_path / "awq")).model(ids), qm.model(ids))


def test_an_in_proj_bias_is_folded_and_stored(tmp_path):
    """The gate fold divides in_proj's gate bias too: the artifact must carry it (a model with biases)."""
    from conftest import random_hf_mamba, token_windows
    hf = random_hf_mamba(vocab=256, hidden=64, layers=2, state=8, seed=9, use_bias=True)
    model = MambaLM(MambaConfig.from_hf_dict(hf.config.to_dict())).eval()
    model.load_state_dict(hf.state_dict())
    with torch.no_grad():
        for layer in model.backbone.layers:
            layer.mixer.in_proj.bias.normal_(0, 0.5)
    calib, ids = token_windows(1, (6, 64), (2, 48))
    qm = quantize(model, "rtn", calib, QuantConfig(w_bits=4, weight_scales="awq", weight_rounding="rtn"), progress=False)
    art = save_quantized(qm, tmp_path / "awq")
    with torch.no_grad():
        fp = model(ids).double()
        assert rel_err(load_quantized(art, with_quantizers=False).model(ids).double(), fp) < 1e-6
        assert torch.equal(load_quantized(art).model(ids), qm.model(ids))


def rel_err(a, b):
    return ((a - b).norm() / b.norm()).item()


def test_export_runs_the_awq_model(model_and_calib, tmp_path):
    pytest.importorskip("onnxruntime")
    from mq_deploy.deploy.onnxruntime_session import onnxruntime_session
    from mq_deploy.export import export_onnx
    model, calib, ids = model_and_calib
    art = save_quantized(quantize(model, "rtn", calib, QuantConfig(w_bits=4, weight_scales="awq"), progress=False),
                         tmp_path / "awq")
    result = export_onnx(art, tmp_path / "onnx" / "model.onnx", precision="fp32")
    with torch.no_grad():
        ref = load_quantized(art).model(ids).numpy()
    out = onnxruntime_session(result.onnx_path).run(["logits"], {"input_ids": ids.numpy()})[0]
    assert np.linalg.norm(out - ref) / np.linalg.norm(ref) < 1e-4


@pytest.mark.parametrize("config", [dict(w_bits=8, weight_scales="awq"), dict(w_bits=4, a_bits=8, weight_scales="awq"),
                                    dict(w_bits=4, weight_scales="gptq"),
                                    dict(w_bits=4, weight_scales="awq", effective_bits=5.0)])
def test_awq_outside_weight_only_4bit_is_refused(config):
    with pytest.raises(MQDeployError, match="weight-only|unknown weight scales|not supported yet"):
        QuantConfig(**config)
