"""Mixed precision under a size budget (quant/mixed_precision.py): the sensitivity of each linear is
what a real re-quantization with that linear kept buys (KL against FP, computed here in float64),
the assembled model is exactly quantize() with the chosen linears named, the budget holds, and the
artifact and its export carry the kept linears as such (FP in deploy mode)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mq_deploy.errors import MQDeployError
from mq_deploy.models import MambaConfig, MambaLM
from mq_deploy.quant.artifact import load_quantized, save_quantized
from mq_deploy.quant.config import QuantConfig
from mq_deploy.quant.mixed_precision import SENSITIVITY_BATCH, choose, effective_bits_of
from mq_deploy.quant.quantize import quantize

LAYERS = 2


@pytest.fixture(scope="module")
def model_and_calib():
    """K = 64 (in_proj) and 128 (x_proj, out_proj) take INT4 blocks: three 4-bit linears a layer."""
    from conftest import random_hf_mamba, token_windows
    hf = random_hf_mamba(vocab=256, hidden=64, layers=LAYERS, state=8, seed=7)
    model = MambaLM(MambaConfig.from_hf_dict(hf.config.to_dict())).eval()
    model.load_state_dict(hf.state_dict())
    return (model, *token_windows(0, (6, 64), (4, 48)))


def kl_against_fp(model, fp, ids) -> float:
    """mean over tokens of KL(FP ‖ model), float64, written out; in the pass's batches (paper mode's
    per-time-step h·C quantization takes its range over the batch)."""
    total = 0.0
    with torch.no_grad():
        for batch in ids.split(SENSITIVITY_BATCH):
            p = torch.log_softmax(fp(batch).double(), -1)
            q = torch.log_softmax(model(batch).double(), -1)
            total += float((p.exp() * (p - q)).sum())
    return total / ids[..., :].numel()


def state(qm):
    return {k: v.clone() for k, v in qm.model.state_dict().items()}


@pytest.mark.parametrize("config", [QuantConfig(w_bits=4, a_bits=16, effective_bits=6.0),
                                    QuantConfig(w_bits=4, a_bits=8, mode="paper", effective_bits=4.8)],
                         ids=["W4A16-deploy-gptq-fp16", "W4A8-paper-int8"])
def test_mixed_model_is_quantize_with_the_chosen_linears_and_gains_are_real(model_and_calib, config):
    model, calib, _ = model_and_calib
    mixed = quantize(model, "mambaquant", calib, config, progress=False)
    report = mixed.mixed_precision
    kept = report["kept"]
    assert kept and list(mixed.config.keep_linears) == kept and mixed.config.effective_bits is None
    assert report["effective_bits"] <= config.effective_bits + 1e-12 and report["effective_bits_budget"] == config.effective_bits
    assert report["kept_as"] == ("fp16" if config.mode == "deploy" else "int8")
    # exactly what quantize gives when told the chosen linears
    plain = dict(w_bits=4, a_bits=config.a_bits, mode=config.mode)
    named = quantize(model, "mambaquant", calib, QuantConfig(**plain, keep_linears=tuple(kept)), progress=False)
    a, b = state(mixed), state(named)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert mixed.weight_specs == named.weight_specs and mixed.activation_ranges == named.activation_ranges
    if config.mode == "deploy":
        assert not set(kept) & set(mixed.weight_specs)          # FP: no weight spec at all
    else:
        assert {n for n, s in mixed.weight_specs.items() if s.bits == 8} == set(kept)
    assert all(torch.equal(mixed.transformed_weights[k], named.transformed_weights[k]) for k in named.transformed_weights)
    # each reported gain is the KL drop of a real re-quantization with that linear alone kept
    windows = calib[:report["sensitivity_windows"][0]]
    all4 = quantize(model, "mambaquant", calib, QuantConfig(**plain), progress=False)
    base = kl_against_fp(all4.model, model, windows)
    assert report["kl_all_4bit"] == pytest.approx(base, rel=1e-6)
    for name in ("backbone.layers.0.mixer.in_proj", "backbone.layers.1.mixer.out_proj"):
        one = quantize(model, "mambaquant", calib, QuantConfig(**plain, keep_linears=(name,)), progress=False)
        assert report["kl_gain_when_kept"][name] == pytest.approx(base - kl_against_fp(one.model, model, windows),
                                                                  rel=1e-5, abs=1e-15)


@pytest.mark.parametrize("kept_bits", [8, 16])
def test_choice_spends_the_budget_on_gain_per_weight(kept_bits):
    sizes = {"a": 100, "b": 100, "c": 400, "d": 50}
    gains = {"a": 1.0, "b": 3.0, "c": 8.0, "d": -0.1}     # per weight: b 0.03, c 0.02, a 0.01, d < 0
    extra = kept_bits - 4
    assert choose(gains, sizes, 4.0, kept_bits) == []
    assert choose(gains, sizes, kept_bits, kept_bits) == ["a", "b", "c"]      # never d: keeping it made it worse
    # room for 100 kept weights: b fits (the most gain per weight), then nothing else does
    assert choose(gains, sizes, 4.0 + extra * 100 / 650, kept_bits) == ["b"]
    assert choose(gains, sizes, 4.0 + extra * 500 / 650, kept_bits) == ["b", "c"]
    for budget in np.linspace(4, kept_bits, 17):
        kept = choose(gains, sizes, float(budget), kept_bits)
        assert effective_bits_of(sizes, kept, kept_bits) <= budget + 1e-12


def test_artifact_and_export_carry_the_kept_linears(model_and_calib, tmp_path):
    pytest.importorskip("onnxruntime")
    from conftest import assert_export_keeps_linears_float
    model, calib, ids = model_and_calib
    kept = ("backbone.layers.0.mixer.x_proj", "backbone.layers.1.mixer.in_proj")
    qm = quantize(model, "mambaquant", calib, QuantConfig(w_bits=4, a_bits=16, keep_linears=kept), progress=False)
    art = save_quantized(qm, tmp_path / "mixed")
    assert json.loads((art / "quant.json").read_text())["config"]["keep_linears"] == list(kept)
    loaded = load_quantized(art)
    assert loaded.config.keep_linears == kept and loaded.weight_specs == qm.weight_specs
    with torch.no_grad():
        ref = loaded.model(ids).numpy()
        assert np.array_equal(ref, qm.model(ids).numpy())
    assert_export_keeps_linears_float(art, tmp_path / "onnx" / "model.onnx", kept, 3 * LAYERS - len(kept), ids, ref)


@pytest.mark.parametrize("config, message", [
    (dict(w_bits=4, keep_linears=("backbone.layers.0.mixer.dt_proj",)), "not a linear this model quantizes at 4 bits"),
    (dict(w_bits=4, keep_linears=("backbone.layers.9.mixer.in_proj",)), "not a linear this model quantizes at 4 bits"),
    (dict(w_bits=4, effective_bits=4.5, keep_linears=("backbone.layers.0.mixer.in_proj",)), "not both"),
    (dict(w_bits=4, a_bits=8, effective_bits=4.5), "W4A8 in deploy mode"),
])
def test_bad_exceptions_are_refused_before_any_work(model_and_calib, config, message):
    model, calib, _ = model_and_calib
    with pytest.raises(MQDeployError, match=message):
        quantize(model, "mambaquant", calib, QuantConfig(**config), progress=False)


@pytest.mark.parametrize("config, message", [
    (dict(w_bits=8, effective_bits=6.0), "for 4-bit weights"),
    (dict(w_bits=4, effective_bits=17.0), "between 4"),
    (dict(w_bits=4, mode="paper", effective_bits=9.0), "between 4"),
    (dict(w_bits=4, effective_bits=3.5), "between 4"),
    (dict(w_bits=4, effective_bits=4.5, weight_scales="awq"), "not supported yet"),
])
def test_bad_budgets_are_refused(config, message):
    with pytest.raises(MQDeployError, match=message):
        QuantConfig(**config)


def test_quantize_command_with_a_budget(model_and_calib, tmp_path, capsys, monkeypatch):
    from mq_deploy.cli import main
    from mq_deploy.models.loading import save_model
    model, calib, _ = model_and_calib
    monkeypatch.setenv("MQ_PROGRESS", "0")
    save_model(model, tmp_path / "fp")
    np.save(tmp_path / "ids.npy", calib.numpy())
    assert main(["quantize", "--model", str(tmp_path / "fp"), "--calib", str(tmp_path / "ids.npy"), "--calib-samples",
                 "6", "--calib-seq-len", "64", "--w-bits", "4", "--effective-bits", "6",
                 "--out", str(tmp_path / "q")]) == 0
    report = json.loads((tmp_path / "q" / "report.json").read_text())["mixed_precision"]
    kept = json.loads((tmp_path / "q" / "quant.json").read_text())["config"]["keep_linears"]
    assert kept == report["kept"] and kept and report["effective_bits"] <= 6
    assert f"{len(kept)} linears kept as fp16" in capsys.readouterr().out
