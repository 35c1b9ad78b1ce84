"""The recipes on Mamba-2 (issue 16, item 2): every transform exact in float64 on models transformers
wrote (tests/test_models_mamba2.py holds our Mamba2LM to transformers' forward), the out_proj
smoothing folded into the gated-RMSNorm weight, S7 over the x/B/C conv channels, no dt bottleneck;
quantize() end to end and the artifact round trip."""

from __future__ import annotations

import copy

import pytest
import torch

from conftest import randomize_parameters
from mq_deploy.errors import MQDeployError
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


def test_unsupported_settings_are_one_error_before_any_work(model_dir):
    model = load_mamba2(model_dir).model
    calib = ids(model.config.vocab_size, (2, 16), 1)
    with pytest.raises(MQDeployError, match="Mamba-2 model quantizes in deploy mode only"):
        quantize(model, "rtn", calib, QuantConfig(mode="paper"), progress=False)
    with pytest.raises(MQDeployError, match="not supported for Mamba-2 yet"):
        quantize(model, "rtn", calib, QuantConfig(w_bits=4, weight_scales="awq"), progress=False)


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
    assert "paper rows are left out" in done.stderr and (tmp_path / "cmp.md").is_file()


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
