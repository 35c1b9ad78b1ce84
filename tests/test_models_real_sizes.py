"""The published Mamba-1 configurations shipped with the package, and checkpoints of them written
offline in both formats (transformers' save_pretrained for -hf; mamba_ssm's layout), loaded as a
user's download would be."""

from __future__ import annotations

import json

import pytest
import torch

from mq_deploy.errors import MQDeployError
from mq_deploy.models.loading import load_config, load_model
from mq_deploy.models.real_sizes import REAL_SIZES, materialize, parameter_count, real_config

# From the model cards / published config.json files: (d_model, n_layer), total parameters (millions)
PUBLISHED = {"130m": (768, 24, 129), "370m": (1024, 48, 372), "790m": (1536, 48, 793),
             "1.4b": (2048, 48, 1372), "2.8b": (2560, 64, 2768)}


@pytest.mark.parametrize("size", REAL_SIZES)
def test_both_formats_read_as_the_same_model(size, tmp_path):
    d, n, millions = PUBLISHED[size]
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
    with pytest.raises(MQDeployError, match="unknown size"):
        real_config("7b")
    (tmp_path / "taken").mkdir()
    with pytest.raises(MQDeployError, match="exists"):
        materialize("130m", tmp_path / "taken", "mamba_ssm", layers=1)
    with pytest.raises(MQDeployError, match="layers must be"):
        materialize("130m", tmp_path / "new", "mamba_ssm", layers=25)
