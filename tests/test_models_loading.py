"""Checkpoint formats in, one canonical model out; save -> load is exact; bad inputs give one clear error."""

from __future__ import annotations

import json
import math

import pytest
import torch

from mq_deploy.errors import MQDeployError
from mq_deploy.models.loading import load_config, load_model, save_model


def write_mamba_ssm_checkpoint(hf, directory, vocab, multiple=8):
    """A directory as mamba_ssm's MambaLMHeadModel saves it: its config keys, `backbone.embedding.`
    (no s), vocab padded to a multiple, pytorch_model.bin."""
    directory.mkdir()
    cfg = hf.config
    (directory / "config.json").write_text(json.dumps({
        "d_model": cfg.hidden_size, "d_intermediate": 0, "n_layer": cfg.num_hidden_layers, "vocab_size": vocab,
        "ssm_cfg": {"d_state": cfg.state_size, "dt_rank": cfg.time_step_rank}, "attn_layer_idx": [],
        "attn_cfg": {}, "rms_norm": True, "residual_in_fp32": True, "fused_add_norm": True,
        "pad_vocab_size_multiple": multiple, "tie_embeddings": True}))
    state = {k.replace("backbone.embeddings.", "backbone.embedding."): v for k, v in hf.state_dict().items()}
    torch.save(state, directory / "pytorch_model.bin")


def write_bin_checkpoint(hf, directory):
    """An older-style HF directory: config.json + pytorch_model.bin (transformers 5 writes safetensors only)."""
    hf.config.save_pretrained(directory)
    torch.save(hf.state_dict(), directory / "pytorch_model.bin")


def test_hf_safetensors_bin_and_sharded_dirs(hf_mamba_factory, tmp_path):
    hf = hf_mamba_factory(vocab=101, hidden=40, layers=2, state=8, rank=5)
    ids = torch.randint(0, 101, (2, 19))
    with torch.no_grad():
        expected = hf(ids).logits
    hf.save_pretrained(tmp_path / "st")
    write_bin_checkpoint(hf, tmp_path / "bin")
    hf.save_pretrained(tmp_path / "sharded", max_shard_size="30KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    for name in ("st", "bin", "sharded"):
        loaded = load_model(tmp_path / name)
        assert loaded.source_format == "hf"
        with torch.no_grad():
            torch.testing.assert_close(loaded.model(ids), expected, rtol=1e-5, atol=1e-5)


def test_mamba_ssm_dir_loads_into_ours_and_into_transformers(hf_mamba_factory, tmp_path):
    """Vocab 250 padded to 256: the same state_dict gives the same logits in both implementations."""
    hf = hf_mamba_factory(vocab=256, hidden=32, layers=2, state=8, rank=3)
    write_mamba_ssm_checkpoint(hf, tmp_path / "ssm", vocab=250, multiple=8)
    loaded = load_model(tmp_path / "ssm")
    assert loaded.source_format == "mamba_ssm"
    assert loaded.config.vocab_size == 256 and loaded.config.tie_word_embeddings
    assert loaded.model.lm_head.weight is loaded.model.backbone.embeddings.weight
    # transformers reads the same file through MambaModel's embedding->embeddings load hook
    import transformers
    other = transformers.MambaForCausalLM(transformers.MambaConfig(
        vocab_size=256, hidden_size=32, num_hidden_layers=2, state_size=8, time_step_rank=3)).eval()
    state = torch.load(tmp_path / "ssm" / "pytorch_model.bin", weights_only=True)
    missing, unexpected = other.load_state_dict(state, strict=False)
    assert not unexpected and set(missing) <= {"backbone.embeddings.weight", "lm_head.weight"}
    ids = torch.randint(0, 250, (2, 13))
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(ids), other(ids).logits, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(loaded.model(ids), hf(ids).logits, rtol=1e-5, atol=1e-5)


def test_save_load_round_trip_is_bit_identical(hf_mamba_factory, tmp_path):
    hf = hf_mamba_factory()
    original = load_model_from_hf(hf, tmp_path)
    save_model(original.model, tmp_path / "ours")
    again = load_model(tmp_path / "ours")
    a, b = original.model.state_dict(), again.model.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key
    # and transformers reads what we write
    import transformers
    reread = transformers.MambaForCausalLM.from_pretrained(tmp_path / "ours").eval()
    ids = torch.randint(0, 97, (1, 11))
    with torch.no_grad():
        torch.testing.assert_close(reread(ids).logits, again.model(ids), rtol=1e-5, atol=1e-5)


def load_model_from_hf(hf, tmp_path):
    hf.save_pretrained(tmp_path / "hf")
    return load_model(tmp_path / "hf")


def test_untied_head_is_kept(hf_mamba_factory, tmp_path):
    hf = hf_mamba_factory(tie_word_embeddings=False)
    with torch.no_grad():
        hf.lm_head.weight.normal_()
    loaded = load_model_from_hf(hf, tmp_path)
    assert not loaded.config.tie_word_embeddings
    ids = torch.randint(0, 97, (1, 7))
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(ids), hf(ids).logits, rtol=1e-5, atol=1e-5)


def test_save_is_atomic(hf_mamba_factory, tmp_path, monkeypatch):
    loaded = load_model_from_hf(hf_mamba_factory(), tmp_path)
    import mq_deploy.models.loading

    def broken(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(mq_deploy.models.loading, "write_safetensors", broken)
    with pytest.raises(MQDeployError, match="disk full"):    # one line for the user, nothing written
        save_model(loaded.model, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["hf"]   # no temp dir left behind


def test_tokenizers(hf_mamba_factory, tmp_path):
    from mq_deploy.models import MambaConfig, MambaLM
    byte_model = MambaLM(MambaConfig(vocab_size=256, hidden_size=16, num_hidden_layers=1, tokenizer="bytes"))
    save_model(byte_model, tmp_path / "bytes")
    tok = load_model(tmp_path / "bytes").tokenizer
    assert tok.encode("héllo") == list("héllo".encode()) and tok.decode(tok.encode("héllo")) == "héllo"

    # a model directory with its own tokenizer files: read through transformers, offline
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    vocab = {w: i for i, w in enumerate(["[UNK]", "the", "cat", "sat"])}
    raw = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    hf = hf_mamba_factory()
    hf.save_pretrained(tmp_path / "own")
    PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="[UNK]").save_pretrained(tmp_path / "own")
    tok = load_model(tmp_path / "own").tokenizer
    assert tok.encode("the cat sat") == [1, 2, 3]

    # neither: a clear error only when the tokenizer is asked for
    hf.save_pretrained(tmp_path / "none")
    loaded = load_model(tmp_path / "none")
    with pytest.raises(MQDeployError, match="no tokenizer"):
        loaded.tokenizer


# ------------------------------------------------------------------------------------ bad inputs

def _hf_dir(hf_mamba_factory, tmp_path, name="m"):
    hf_mamba_factory().save_pretrained(tmp_path / name)
    return tmp_path / name


def test_missing_and_wrong_paths(tmp_path):
    with pytest.raises(MQDeployError, match="does not exist"):
        load_model(tmp_path / "nope")
    (tmp_path / "file.bin").write_bytes(b"x")
    with pytest.raises(MQDeployError, match="is a file"):
        load_model(tmp_path / "file.bin")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MQDeployError, match="no config.json"):
        load_model(tmp_path / "empty")


@pytest.mark.parametrize("config, message", [
    ({"model_type": "mamba2", "hidden_size": 64}, "Mamba-2 checkpoint"),
    ({"d_model": 64, "n_layer": 2, "ssm_cfg": {"layer": "Mamba2"}}, "Mamba-2 checkpoint"),
    ({"model_type": "llama", "hidden_size": 64}, "not a Mamba model"),
    ({"model_type": "falcon_mamba"}, "Falcon-Mamba"),
    ({"d_model": 64, "n_layer": 2, "d_intermediate": 128}, "hybrid"),
    ({"hidden": 3}, "cannot tell the architecture"),
    ({"model_type": "mamba", "hidden_size": -4, "vocab_size": 10, "num_hidden_layers": 1}, "not a valid Mamba config"),
])
def test_unsupported_configs(tmp_path, config, message):
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(MQDeployError, match=message):
        load_config(tmp_path)


def test_broken_json(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(MQDeployError, match="not valid JSON"):
        load_config(tmp_path)


def test_missing_weights(hf_mamba_factory, tmp_path):
    d = _hf_dir(hf_mamba_factory, tmp_path)
    (d / "model.safetensors").unlink()
    with pytest.raises(MQDeployError, match="has no weights"):
        load_model(d)


def test_missing_and_misshaped_tensors(hf_mamba_factory, tmp_path):
    from safetensors.torch import load_file, save_file
    d = _hf_dir(hf_mamba_factory, tmp_path)
    state = load_file(d / "model.safetensors")
    without = {k: v for k, v in state.items() if "layers.1.mixer.x_proj" not in k}
    save_file(without, d / "model.safetensors")
    with pytest.raises(MQDeployError, match=r"missing tensors: backbone\.layers\.1\.mixer\.x_proj\.weight"):
        load_model(d)
    state["backbone.layers.0.mixer.D"] = torch.ones(3)
    save_file(state, d / "model.safetensors")
    with pytest.raises(MQDeployError, match=r"shape mismatches: backbone\.layers\.0\.mixer\.D"):
        load_model(d)


def test_weights_from_another_config(hf_mamba_factory, tmp_path):
    d = _hf_dir(hf_mamba_factory, tmp_path)
    cfg = json.loads((d / "config.json").read_text())
    cfg["num_hidden_layers"] = 3
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(MQDeployError, match="does not match its config.json"):
        load_model(d)


def test_truncated_bin(hf_mamba_factory, tmp_path):
    write_bin_checkpoint(hf_mamba_factory(), tmp_path / "m")
    data = (tmp_path / "m" / "pytorch_model.bin").read_bytes()
    (tmp_path / "m" / "pytorch_model.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(MQDeployError, match="cannot read"):
        load_model(tmp_path / "m")


def test_mamba_ssm_vocab_padding_rule(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"d_model": 768, "n_layer": 24, "vocab_size": 50277,
                                                      "ssm_cfg": {}, "pad_vocab_size_multiple": 8}))
    config, fmt = load_config(tmp_path)
    assert fmt == "mamba_ssm"
    assert config.vocab_size == 50280 and config.intermediate_size == 1536
    assert config.time_step_rank == math.ceil(768 / 16) == 48


def test_a_bin_checkpoint_is_mapped_not_read_into_memory(tmp_path):
    """pytorch_model.bin (mamba_ssm's format, the official Vim .pth) is mapped copy-on-write: loading
    256 MB of weights adds almost nothing to the process's anonymous memory (it added the whole
    256 MB when read), writing to a loaded tensor leaves the file alone, and the legacy
    (non-zip) format, which cannot be mapped, still loads."""
    import subprocess
    import sys
    file = tmp_path / "pytorch_model.bin"
    torch.save({"w": torch.arange(32 * 2**20, dtype=torch.float64)}, file)
    script = ("import sys, torch\n"
              "from pathlib import Path\n"
              "from mq_deploy.models.loading import load_torch_file\n"
              "def anon():\n"
              "    return next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('RssAnon:')) / 1024\n"
              "before = anon()\n"
              "state = load_torch_file(Path(sys.argv[1]))\n"
              "assert float(state['w'][-1]) == 32 * 2**20 - 1 and float(state['w'].sum()) > 0\n"   # every page read
              "print(anon() - before)\n"
              "state['w'].zero_()\n")
    proc = subprocess.run([sys.executable, "-c", script, str(file)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert float(proc.stdout.split()[-1]) < 64, proc.stdout          # MB of anonymous memory for 256 MB of weights
    again = torch.load(file, weights_only=True)["w"]
    assert float(again[-1]) == 32 * 2**20 - 1 and float(again[1]) == 1.0    # the file was not written
    legacy = tmp_path / "legacy.bin"
    torch.save({"w": torch.ones(3)}, legacy, _use_new_zipfile_serialization=False)
    from mq_deploy.models.loading import load_torch_file
    assert torch.equal(load_torch_file(legacy)["w"], torch.ones(3))
