"""The published configurations shipped with the package (Mamba-1, Mamba-2, Vision Mamba), and
checkpoints of them written offline in each format (transformers' save_pretrained for -hf; mamba_ssm's
layout; the official Vim .pth), loaded as a user's download would be and held to transformers (and,
for Vim, to the official forward written out in tests/test_models_vim.py)."""

from __future__ import annotations

import json

import pytest
import torch

from mq_deploy.errors import MQDeployError
from mq_deploy.models.loading import load_config, load_model
from mq_deploy.models.checkpoints import load_checkpoint
from mq_deploy.models.real_sizes import (PUBLISHED, REAL_SIZES, checkpoint_path, materialize, parameter_count,
                                         published, real_config)

# From the model cards / published config.json files: (d_model, n_layer), total parameters (millions)
MAMBA1_SIZES = {"130m": (768, 24, 129), "370m": (1024, 48, 372), "790m": (1536, 48, 793),
                "1.4b": (2048, 48, 1372), "2.8b": (2560, 64, 2768)}


@pytest.mark.parametrize("size", REAL_SIZES)
def test_both_formats_read_as_the_same_model(size, tmp_path):
    d, n, millions = MAMBA1_SIZES[size]
    configs = []
    for fmt in ("hf", "mamba_ssm"):
        folder = tmp_path / fmt
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps(real_config(size, fmt)))
        config, detected = load_config(folder)
        assert detected == fmt
        configs.append(config)
    hf, ssm = configs
    assert (hf.hidden_size, hf.num_hidden_layers, hf.intermediate_size, hf.time_step_rank, hf.vocab_size) == (
        d, n, 2 * d, -(-d // 16), 50280)
    for field in ("hidden_size", "num_hidden_layers", "intermediate_size", "time_step_rank", "vocab_size",
                  "state_size", "conv_kernel", "use_bias", "use_conv_bias", "tie_word_embeddings"):
        assert getattr(hf, field) == getattr(ssm, field), field
    assert abs(parameter_count(size) / 1e6 - millions) / millions < 0.01


def test_hf_checkpoint_written_by_transformers_loads_with_its_logits(tmp_path):
    transformers = pytest.importorskip("transformers")
    out = materialize("130m", tmp_path / "m", "hf", layers=2)
    assert (out / "model.safetensors").is_file() and not list(tmp_path.glob(".m.*"))
    ours = load_model(out)
    assert ours.source_format == "hf" and ours.model.config.num_hidden_layers == 2
    theirs = transformers.MambaForCausalLM.from_pretrained(out).eval()
    ids = torch.randint(0, 50280, (2, 17), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = theirs(ids).logits
        got = ours.model(ids)
    assert torch.linalg.norm(got - want) / torch.linalg.norm(want) < 1e-5


def test_mamba_ssm_checkpoint_loads_tied_and_padded(tmp_path):
    out = materialize("130m", tmp_path / "m", "mamba_ssm", layers=1)
    state = torch.load(out / "pytorch_model.bin", weights_only=True)
    assert state["backbone.embedding.weight"].shape == (50280, 768) and "backbone.embeddings.weight" not in state
    loaded = load_model(out)
    assert loaded.source_format == "mamba_ssm"
    assert loaded.model.lm_head.weight is loaded.model.backbone.embeddings.weight
    assert torch.equal(loaded.model.backbone.embeddings.weight, state["backbone.embedding.weight"])


def test_refusals(tmp_path):
    with pytest.raises(MQDeployError, match="unknown model"):
        real_config("7b")
    (tmp_path / "taken").mkdir()
    with pytest.raises(MQDeployError, match="exists"):
        materialize("130m", tmp_path / "taken", "mamba_ssm", layers=1)
    with pytest.raises(MQDeployError, match="layers must be"):
        materialize("130m", tmp_path / "new", "mamba_ssm", layers=25)


# state-spaces/mamba2-<size>: (d_model, n_layer); hustvl/Vim: (embed_dim, stride) and the model
# cards' parameter counts (millions)
MAMBA2_SIZES = {"130m": (768, 24), "370m": (1024, 48), "780m": (1536, 48), "1.3b": (2048, 48), "2.7b": (2560, 64)}


def mamba2_parameters(d: int, layers: int, vocab: int = 50288, state: int = 128, head_dim: int = 64,
                      kernel: int = 4) -> int:
    """A mamba_ssm Mamba2 LM's parameters, counted from its modules (groups 1, expand 2, tied head)."""
    inner, heads = 2 * d, 2 * d // head_dim
    conv = inner + 2 * state
    per_layer = (d * (2 * inner + 2 * state + heads)      # in_proj: z, x, B, C, dt
                 + conv * kernel + conv                   # depthwise conv and its bias
                 + 3 * heads                              # dt_bias, A_log, D
                 + inner + inner * d + d)                 # gated norm, out_proj, the block's norm
    return vocab * d + layers * per_layer + d
VIM_SIZES = {"t": (192, 16, 7), "t-ft": (192, 8, 7), "s": (384, 16, 26), "s-ft": (384, 8, 26), "b": (768, 16, 98)}


def converted_by_transformers(ssm: dict):
    """transformers' convert_mamba2_ssm_checkpoint_to_pytorch.convert_ssm_config_to_hf_config, written out:
    Mamba2Config()'s defaults with the mamba_ssm config's sizes."""
    transformers = pytest.importorskip("transformers")
    hf = transformers.Mamba2Config()
    hf.hidden_size = ssm["d_model"]
    hf.num_heads = hf.hidden_size * hf.expand // hf.head_dim
    hf.num_hidden_layers = ssm["n_layer"]
    hf.n_groups = ssm.get("n_groups", 1)
    hf.residual_in_fp32 = ssm["residual_in_fp32"]
    hf.tie_word_embeddings = ssm["tie_embeddings"]
    hf.norm_before_gate = False
    hf.pad_token_id = hf.bos_token_id = hf.eos_token_id = 0
    multiple = ssm["pad_vocab_size_multiple"]
    hf.vocab_size = -(-ssm["vocab_size"] // multiple) * multiple
    return hf


@pytest.mark.parametrize("size", MAMBA2_SIZES)
def test_mamba2_configs_are_the_published_ones_and_their_conversion(size):
    transformers = pytest.importorskip("transformers")
    d, n = MAMBA2_SIZES[size]
    ssm = real_config(f"mamba2-{size}")
    assert (ssm["d_model"], ssm["n_layer"], ssm["ssm_cfg"], ssm["pad_vocab_size_multiple"]) == (d, n, {"layer": "Mamba2"}, 16)
    want = converted_by_transformers(ssm).to_dict()
    got = transformers.Mamba2Config(**{k: v for k, v in real_config(f"mamba2-{size}", "hf").items()
                                       if k != "architectures"}).to_dict()
    for key in ("hidden_size", "num_heads", "head_dim", "num_hidden_layers", "n_groups", "state_size", "expand",
                "conv_kernel", "vocab_size", "tie_word_embeddings", "norm_before_gate", "use_bias", "use_conv_bias",
                "residual_in_fp32", "layer_norm_epsilon", "chunk_size", "time_step_limit", "eos_token_id"):
        assert got[key] == want[key], key
    assert parameter_count(f"mamba2-{size}") == mamba2_parameters(d, n)
    assert abs(mamba2_parameters(d, n) / 1e6 / float(size[:-1]) / (1000 if size.endswith("b") else 1) - 1) < 0.04


@pytest.mark.parametrize("size", VIM_SIZES)
def test_vim_configs_are_the_published_models(size):
    d, stride, millions = VIM_SIZES[size]
    cfg = real_config(f"vim-{size}")
    assert (cfg["hidden_size"], cfg["num_hidden_layers"], cfg["state_size"], cfg["stride"], cfg["img_size"]) == (
        d, 24, 16, stride, 224)
    assert cfg["_file"].startswith(f"vim_{size[0]}_midclstok_") and ("_ft_" in cfg["_file"]) == size.endswith("-ft")
    assert abs(parameter_count(f"vim-{size}") / 1e6 - millions) / millions < 0.05


def _ids(vocab):
    return torch.randint(0, vocab, (2, 19), generator=torch.Generator().manual_seed(0))


def test_mamba2_mamba_ssm_checkpoint_matches_transformers_on_its_weights(tmp_path):
    """As published (mamba_ssm layout, vocab padded to 50288, tied): our loader against transformers'
    Mamba2ForCausalLM at the converted config, given the same file's tensors."""
    transformers = pytest.importorskip("transformers")
    out = materialize("mamba2-130m", tmp_path / "m", layers=1)
    assert checkpoint_path("mamba2-130m", tmp_path / "m") == out
    state = torch.load(out / "pytorch_model.bin", weights_only=True)
    assert state["backbone.embedding.weight"].shape == (50288, 768) and "backbone.embeddings.weight" not in state
    assert state["backbone.layers.0.mixer.A_log"].shape == (24,)               # one A per head of 64
    ours = load_checkpoint(out)
    assert ours.source_format == "mamba_ssm" and ours.model.lm_head.weight is ours.model.backbone.embeddings.weight
    config = converted_by_transformers(real_config("mamba2-130m"))
    config.num_hidden_layers = 1
    theirs = transformers.Mamba2ForCausalLM(config).eval()
    theirs.load_state_dict({k.replace("backbone.embedding.", "backbone.embeddings."): v for k, v in state.items()})
    ids = _ids(50288)
    with torch.no_grad():
        want = theirs(ids).logits
        got = ours.model(ids)
    assert torch.linalg.norm(got - want) / torch.linalg.norm(want) < 1e-5


def test_mamba2_hf_checkpoint_written_by_transformers_loads_with_its_logits(tmp_path):
    transformers = pytest.importorskip("transformers")
    out = materialize("mamba2-370m", tmp_path / "m", "hf", layers=1)
    ours = load_checkpoint(out)
    assert ours.source_format == "hf" and ours.config.hidden_size == 1024 and ours.config.num_heads == 32
    theirs = transformers.Mamba2ForCausalLM.from_pretrained(out).eval()
    ids = _ids(50288)
    with torch.no_grad():
        want = theirs(ids).logits
        got = ours.model(ids)
    assert torch.linalg.norm(got - want) / torch.linalg.norm(want) < 1e-5


@pytest.mark.parametrize("name, layers", [("vim-s", 2), ("vim-t-ft", 1)])
def test_vim_official_file_matches_the_official_forward(name, layers, tmp_path):
    from test_models_vim import official_forward, rel
    out = materialize(name, tmp_path / "v", layers=layers)
    assert out.parent == tmp_path / "v" and out.name == real_config(name)["_file"]
    assert checkpoint_path(name, tmp_path / "v") == out
    raw = torch.load(out, weights_only=True)["model"]
    assert "layers.0.mixer.x_proj_b.weight" in raw and "head.weight" in raw     # the official names
    loaded = load_checkpoint(out)
    cfg = real_config(name)
    assert (loaded.source_format, loaded.config.hidden_size, loaded.config.stride, loaded.config.num_hidden_layers) == (
        "official", cfg["hidden_size"], cfg["stride"], layers)
    images = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = loaded.model(images)
    assert rel(ours, official_forward(raw, images, stride=cfg["stride"])) <= 1e-5


def test_every_published_name_resolves_and_formats_are_checked(tmp_path):
    assert published("130m") is PUBLISHED["mamba-130m"]
    assert {p.family for p in PUBLISHED.values()} == {"mamba", "mamba2", "vim"}
    with pytest.raises(MQDeployError, match="vim-t comes in official"):
        real_config("vim-t", "hf")
    with pytest.raises(MQDeployError, match="unknown model 'mamba2-8b'"):
        published("mamba2-8b")
    with pytest.raises(MQDeployError, match="layers must be in 1..24"):
        materialize("vim-b", tmp_path / "new", layers=30)
    assert not (tmp_path / "new").exists()
