"""The recipes on Mamba-2 (issue 16, item 2): every transform exact in float64 on models transformers
wrote (tests/test_models_mamba2.py holds our Mamba2LM to transformers' forward), the out_proj
smoothing folded into the gated-RMSNorm weight, S7 over the x/B/C conv channels, no dt bottleneck;
quantize() end to end and the artifact round trip."""

from __future__ import annotations

import copy

import pytest
import torch

from conftest import randomize_parameters
from mq_deploy.models.mamba2_loading import load_mamba2
from mq_deploy.quant.artifact import load_quantized, save_quantized
from mq_deploy.quant.config import QuantConfig
from mq_deploy.quant.quantize import quantize
from mq_deploy.quant.recipes import RECIPES, get_recipe
from mq_deploy.quant.transforms import HadamardRotation, OnlineMatrix, smooth_gate_s_silu

transformers = pytest.importorskip("transformers")

CONFIGS = {
    "groups2": dict(vocab_size=50, hidden_size=24, num_hidden_layers=2, num_heads=6, head_dim=8, n_groups=2,
                    state_size=16, chunk_size=16, tie_word_embeddings=False),
    "tied-bias": dict(vocab_size=61, hidden_size=32, num_hidden_layers=2, num_heads=8, head_dim=4, expand=1,
                      n_groups=2, state_size=16, chunk_size=8, use_bias=True, tie_word_embeddings=True),
}


@pytest.fixture(scope="module", params=list(CONFIGS))
def model_dir(request, tmp_path_factory):
    torch.manual_seed(5)
    hf = transformers.Mamba2ForCausalLM(transformers.Mamba2Config(use_conv_bias=True, **CONFIGS[request.param]))
    randomize_parameters(hf.eval(), a_log=(-1.0, 2.0), dt_bias=("dt_bias", (-3.0, 1.0)), other_bias_std=0.3)
    with torch.no_grad():
        for layer in hf.backbone.layers:                  # an out_proj that matters as much as the residual
            layer.mixer.out_proj.weight.mul_(4)
    path = tmp_path_factory.mktemp(request.param)
    hf.save_pretrained(path)
    return path


def ids(vocab: int, shape, seed: int) -> torch.Tensor:
    return torch.randint(0, vocab, shape, generator=torch.Generator().manual_seed(seed))


def rel(a, b):
    return ((a - b).norm() / b.norm()).item()


def transformed(recipe: str, model):
    work = copy.deepcopy(model)
    get_recipe(recipe).transform(work, ids(model.config.vocab_size, (4, 24), 1), QuantConfig(calib_dtype="float64"),
                                 progress=False)
    return work


@pytest.mark.parametrize("recipe", RECIPES)
def test_every_recipe_keeps_the_mamba2_logits_in_float64_and_transforms(model_dir, recipe):
    model = load_mamba2(model_dir, dtype=torch.float64).model
    x = ids(model.config.vocab_size, (2, 30), 7)
    work = transformed(recipe, model)
    with torch.no_grad():
        assert rel(work(x), model(x)) <= 1e-10
    # ... and it did what it says (doing nothing would keep the logits too)
    new, old = work.backbone.layers[1], model.backbone.layers[1]
    rotated_online = isinstance(new.mixer.out_proj_input, HadamardRotation)
    assert rotated_online == (recipe in ("quarot", "quamba", "mambaquant")), recipe
    residual_rotated = not torch.allclose(work.backbone.embeddings.weight, model.backbone.embeddings.weight)
    assert residual_rotated == (recipe in ("quarot", "mambaquant")), recipe
    smoothed = not torch.allclose(new.mixer.norm.weight * 1.0, old.mixer.norm.weight * 1.0)
    assert smoothed == (recipe in ("smoothquant", "mambaquant")), recipe       # S2 through the gated norm
    if recipe == "smoothquant":
        assert not torch.allclose(new.norm.weight, old.norm.weight)          # in_proj's input through the block norm


def test_mambaquant_on_mamba2_smooths_through_the_gated_norm_and_rotates(model_dir):
    model = load_mamba2(model_dir, dtype=torch.float64).model
    work = transformed("mambaquant", model)
    mixer, old = work.backbone.layers[0].mixer, model.backbone.layers[0].mixer
    assert isinstance(mixer.out_proj_input, HadamardRotation)
    assert mixer.gate_scale is None                               # no S-SiLU: the gate is normalized after
    assert not torch.allclose(mixer.norm.weight, old.norm.weight)   # S2 went into the gated norm's weight
    assert not torch.allclose(mixer.conv1d.weight, old.conv1d.weight)      # S7 over the x, B and C channels
    assert isinstance(work.lm_head_input, OnlineMatrix) == model.config.tie_word_embeddings


def test_s_silu_refuses_a_gated_norm(model_dir):
    mixer = load_mamba2(model_dir, dtype=torch.float64).model.backbone.layers[0].mixer
    with pytest.raises(ValueError, match="gated RMSNorm"):
        smooth_gate_s_silu(mixer, torch.ones(mixer.d_inner))


@pytest.mark.parametrize("recipe", ["rtn", "quarot", "mambaquant"])
def test_quantize_mamba2_end_to_end_and_the_artifact_round_trip(model_dir, recipe, tmp_path):
    model = load_mamba2(model_dir).model
    vocab = model.config.vocab_size
    qm = quantize(model, recipe, ids(vocab, (8, 32), 1), QuantConfig(w_bits=8, a_bits=8), progress=False)
    assert set(qm.weight_specs) == {f"backbone.layers.{i}.mixer.{leaf}" for i in range(2)
                                    for leaf in ("in_proj", "out_proj")}
    x = ids(vocab, (2, 40), 9)
    with torch.no_grad():
        fp, fq = model(x), qm.model(x)
    assert 0 < rel(fq, fp) < 0.1
    save_quantized(qm, tmp_path / "q", source_dir=model_dir)
    loaded = load_quantized(tmp_path / "q")
    assert type(loaded.model).__name__ == "Mamba2LM"
    with torch.no_grad():
        assert torch.equal(loaded.model(x), fq)


def test_paper_mode_quantizes_the_ssd_contraction_with_s4_per_group_and_r4(model_dir, tmp_path):
    """Paper mode on a Mamba-2: MambaQuant's S4 + R4 at the h·C contraction exact in float64 (one S4
    scale per group of B/C), the contraction quantized per step, the artifact round trip."""
    from mq_deploy.quant.paper_scan import install_paper_scan
    model = load_mamba2(model_dir, dtype=torch.float64).model
    vocab, groups = model.config.vocab_size, model.config.n_groups
    x, calib = ids(vocab, (2, 30), 7), ids(vocab, (4, 24), 1)
    work = copy.deepcopy(model)
    get_recipe("mambaquant").transform(work, calib, QuantConfig(mode="paper", calib_dtype="float64"), progress=False)
    install_paper_scan(work, quantize=False)
    with torch.no_grad():
        assert rel(work(x), model(x)) <= 1e-10
    mixer = work.backbone.layers[1].mixer
    per_head = mixer.hc_scale.unflatten(0, (groups, -1))          # [groups, heads in group, N]
    assert torch.equal(per_head, per_head[:, :1].expand_as(per_head)) and (mixer.hc_scale - 1).abs().max() > 0.1
    assert not torch.equal(per_head[0], per_head[1])
    assert mixer.hc_signs.shape == (model.config.state_size,)

    model = load_mamba2(model_dir).model
    qm = quantize(model, "mambaquant", calib, QuantConfig(mode="paper"), progress=False)
    exact = copy.deepcopy(qm.model)
    install_paper_scan(exact, quantize=False)
    with torch.no_grad():
        fq = qm.model(x)
        assert 1e-5 < rel(fq, exact(x)) < 3e-2          # the contraction is quantized: visible, small
        assert 0 < rel(fq, model(x)) < 0.1
    save_quantized(qm, tmp_path / "q", source_dir=model_dir)
    loaded = load_quantized(tmp_path / "q")
    with torch.no_grad():
        assert torch.equal(loaded.model(x), fq)


@pytest.fixture(scope="module")
def int4_model_dir(tmp_path_factory):
    """A Mamba-2 whose linears take INT4 blocks of 64 (d_model 64, d_inner 128), with biases and
    groups, written by transformers."""
    torch.manual_seed(11)
    hf = transformers.Mamba2ForCausalLM(transformers.Mamba2Config(
        vocab_size=256, hidden_size=64, num_hidden_layers=2, num_heads=8, head_dim=16, n_groups=2, state_size=16,
        chunk_size=16, use_bias=True, use_conv_bias=True, tie_word_embeddings=True))
    randomize_parameters(hf.eval(), a_log=(-1.0, 2.0), dt_bias=("dt_bias", (-3.0, 1.0)), other_bias_std=0.3)
    with torch.no_grad():
        hf.backbone.layers[0].norm.weight[5] *= 30.0            # in_proj's input channel 5: an outlier
    path = tmp_path_factory.mktemp("mamba2_int4")
    hf.save_pretrained(path)
    return path


@pytest.mark.parametrize("recipe", ["rtn", "smoothquant", "quarot", "mambaquant"])
def test_awq_on_mamba2_folds_exactly_through_both_norms(int4_model_dir, recipe, tmp_path):
    """AWQ's 1/s goes into the block's RMSNorm (in_proj) and the gated norm's weight (out_proj, where
    no online Hadamard rotates its input): the FP function is unchanged and the artifact reproduces
    the model; the outlier channel is divided down in the norm."""
    model = load_mamba2(int4_model_dir).model
    calib, x = ids(256, (6, 64), 1), ids(256, (2, 40), 9)
    qm = quantize(model, recipe, calib, QuantConfig(w_bits=4, weight_scales="awq", weight_rounding="rtn"),
                  progress=False)
    rotated = recipe in ("quarot", "mambaquant")
    assert set(qm.awq_alpha) == {f"backbone.layers.{i}.mixer.{leaf}" for i in range(2)
                                 for leaf in ("in_proj",) + (() if rotated else ("out_proj",))}
    art = save_quantized(qm, tmp_path / "awq", source_dir=int4_model_dir)
    with torch.no_grad():
        fp = model(x).double()
        assert rel(load_quantized(art, with_quantizers=False).model(x).double(), fp) < 1e-6
        assert torch.equal(load_quantized(art).model(x), qm.model(x))
    if recipe == "rtn":      # nothing else moved the norm: the outlier's γ went down by AWQ's scale
        assert qm.awq_alpha["backbone.layers.0.mixer.in_proj"] > 0
        assert qm.model.backbone.layers[0].norm.weight[5] < model.backbone.layers[0].norm.weight[5]
        plain = quantize(model, "rtn", calib, QuantConfig(w_bits=4, weight_rounding="rtn"), progress=False)
        with torch.no_grad():
            assert rel(qm.model(x), model(x)) < rel(plain.model(x), model(x))


def test_mamba2_mixed_precision_artifact_and_export_carry_the_kept_linears(int4_model_dir, tmp_path):
    pytest.importorskip("onnxruntime")
    import numpy as np

    from conftest import assert_export_keeps_linears_float
    model = load_mamba2(int4_model_dir).model
    calib, x = ids(256, (6, 64), 1), ids(256, (2, 40), 9)
    kept = ("backbone.layers.0.mixer.out_proj", "backbone.layers.1.mixer.in_proj")
    qm = quantize(model, "mambaquant", calib, QuantConfig(w_bits=4, keep_linears=kept, weight_scales="awq"),
                  progress=False)
    assert all(qm.weight_specs[n] is None or qm.weight_specs[n].bits != 4 for n in kept if n in qm.weight_specs)
    art = save_quantized(qm, tmp_path / "mixed", source_dir=int4_model_dir)
    with torch.no_grad():
        ref = load_quantized(art).model(x).numpy()
        assert np.array_equal(ref, qm.model(x).numpy())
    assert_export_keeps_linears_float(art, tmp_path / "onnx" / "model.onnx", kept, 4 - len(kept), x, ref)


def test_mamba2_effective_bits_keeps_what_pays(int4_model_dir):
    """The sensitivity pass on Mamba-2: every linear is scored, what is kept pays (KL gain > 0) and fits
    the budget, and nothing left out with a gain would still fit (the greedy fills it)."""
    model = load_mamba2(int4_model_dir).model
    calib = ids(256, (8, 64), 1)
    qm = quantize(model, "rtn", calib, QuantConfig(w_bits=4, effective_bits=8.0, weight_rounding="rtn"),
                  progress=False)
    record = qm.mixed_precision
    gains = record["kl_gain_when_kept"]
    assert set(gains) == {f"backbone.layers.{i}.mixer.{leaf}" for i in range(2) for leaf in ("in_proj", "out_proj")}
    assert record["kept"] and record["effective_bits"] <= 8.0
    assert all(gains[n] > 0 for n in record["kept"])
    sizes = {n: model.get_submodule(n).weight.numel() for n in gains}
    spare = (8.0 - 4) * sum(sizes.values()) - (16 - 4) * sum(sizes[n] for n in record["kept"])
    assert spare >= 0
    assert all((16 - 4) * sizes[n] > spare for n in gains if n not in record["kept"] and gains[n] > 0)


def test_cli_quantize_and_eval_a_mamba2_model_on_token_ids(model_dir, tmp_path):
    """quantize --eval and eval on a directory transformers wrote (no tokenizer: token ids)."""
    import os
    import subprocess
    import sys

    import numpy as np
    vocab = load_mamba2(model_dir).config.vocab_size
    np.save(tmp_path / "ids.npy", ids(vocab, (8, 600), 3).numpy())

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "mq_deploy", *map(str, args)], capture_output=True, text=True,
                              timeout=600, env={**os.environ, "MQ_PROGRESS": "0"})
    done = cli("quantize", "--model", model_dir, "--calib", tmp_path / "ids.npy", "--calib-samples", 4,
               "--calib-seq-len", 64, "--eval", tmp_path / "ids.npy", "--out", tmp_path / "q")
    assert done.returncode == 0, done.stderr
    assert "perplexity on" in done.stdout
    done = cli("eval", "--model", tmp_path / "q", "--text", tmp_path / "ids.npy", "--seq-len", 64)
    assert done.returncode == 0 and "perplexity" in done.stdout, done.stderr
    done = cli("compare-recipes", "--model", model_dir, "--calib", tmp_path / "ids.npy", "--eval", tmp_path / "ids.npy",
               "--calib-samples", 2, "--calib-seq-len", 64, "--eval-max-tokens", 2048, "--recipes", "rtn",
               "--seeds", 1, "--peers", "--out", tmp_path / "cmp")
    assert done.returncode == 0, done.stderr
    table = (tmp_path / "cmp.md").read_text()
    assert "| rtn | W8A8 | deploy |" in table and "| rtn | W8A8 | paper |" in table
    # --quantize-conv reaches the recipe's config: the conv's INT8 weights and input move the row
    done = cli("compare-recipes", "--model", model_dir, "--calib", tmp_path / "ids.npy", "--eval", tmp_path / "ids.npy",
               "--calib-samples", 2, "--calib-seq-len", 64, "--eval-max-tokens", 2048, "--recipes", "rtn",
               "--bits", "W8A8", "--modes", "deploy", "--seeds", 1, "--peers", "--quantize-conv",
               "--out", tmp_path / "cmp_conv")
    assert done.returncode == 0, done.stderr
    import json
    plain, conv = (json.loads((tmp_path / f"{name}.json").read_text()) for name in ("cmp", "cmp_conv"))
    assert (plain["quantize_conv"], conv["quantize_conv"]) == (False, True)
    row = {(r["bits"], r["mode"]): r for r in plain["rows"]}[("W8A8", "deploy")]
    assert conv["rows"][0]["window_kl"] != row["window_kl"]
    assert "quantize the depthwise conv too" in (tmp_path / "cmp_conv.md").read_text()


def test_mambaquant_keeps_the_bundled_mamba2_demo_logits_in_float64():
    from mq_deploy.samples import samples_dir
    path = samples_dir() / "models" / "mamba2-byte-demo"
    model = load_mamba2(path, dtype=torch.float64).model
    text = b"The quick brown fox jumps over the lazy dog; Mamba-2 is a state space dual model. " * 3
    x = torch.tensor([list(text[:96]), list(text[96:192])])
    work = copy.deepcopy(model)
    get_recipe("mambaquant").transform(work, torch.tensor([list(text[i:i + 32]) for i in range(0, 128, 32)]),
                                       QuantConfig(calib_dtype="float64"), progress=False)
    with torch.no_grad():
        assert rel(work(x), model(x)) <= 1e-10
        # and the trained model predicts this text far better than chance (8 bits a byte)
        nll = torch.nn.functional.cross_entropy(model(x)[:, :-1].reshape(-1, 256), x[:, 1:].reshape(-1))
    assert nll.item() / 0.6931 < 4.0


def test_inspect_shows_a_mamba2_outlier_and_what_the_rotation_did_to_it(int4_model_dir, tmp_path):
    """inspect on Mamba-2: its two linear inputs are plotted, the planted outlier channel (×30 in the
    first block's norm) shows in the FP ratio, and MambaQuant's rotation flattens it."""
    import numpy as np

    from mq_deploy.reports.inspection import inspect_model
    np.save(tmp_path / "ids.npy", ids(256, (4, 64), 2).numpy())
    qm = quantize(load_mamba2(int4_model_dir).model, "mambaquant", ids(256, (6, 64), 1), QuantConfig(),
                  progress=False)
    art = save_quantized(qm, tmp_path / "q", source_dir=int4_model_dir)
    report = inspect_model(int4_model_dir, tmp_path / "plots", quantized_dir=art, text=str(tmp_path / "ids.npy"),
                           samples=4, seq_len=64, progress=False)
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == [
        "channels_in_proj_input.png", "channels_out_proj_input.png", "layer_error.png"]
    ratio = report["points"]["in_proj_input"]
    assert ratio["outlier_ratio_before"] > 10 > ratio["outlier_ratio_after"]
    assert len(report["layer_errors"]) == 2 and all(0 < e < 0.2 for e in report["layer_errors"])
