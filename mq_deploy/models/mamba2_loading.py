"""Read and write Mamba-2 checkpoints.

Two directory formats, told apart by config.json:
- Hugging Face transformers (`model_type: "mamba2"`, what Mamba2ForCausalLM.save_pretrained writes):
  weights in model.safetensors (optionally sharded with an index) or pytorch_model.bin. Ours, what
  `save_mamba2` writes, is this layout too, and transformers reads it.
- mamba_ssm's MambaLMHeadModel with Mamba-2 layers (`d_model`, `n_layer`, `ssm_cfg: {"layer":
  "Mamba2", ...}` and no model_type, e.g. state-spaces/mamba2-130m): pytorch_model.bin, vocab padded
  to `pad_vocab_size_multiple`, `backbone.embedding.weight`, lm_head tied by default. Its mixer keys
  are transformers' (the conversion script, convert_mamba2_ssm_checkpoint_to_pytorch.py, loads the
  state_dict as it is); the sizes come from ssm_cfg with mamba_ssm's Mamba2 defaults (d_state 128,
  d_conv 4, expand 2, headdim 64, ngroups 1, chunk_size 256, rmsnorm, norm_before_gate False, the
  gated norm's eps 1e-5), which the conversion script partly ignores (it takes transformers'
  defaults and a top-level n_groups).
Everything becomes one canonical `Mamba2LM`. Every bad input ends in one one-line `MQDeployError`
that says what is wrong and what to do.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from ..errors import MQDeployError
from .loading import LoadedModel, _read_json, build_language_model, reject_mamba_ssm_variants, save_model
from .mamba2 import Mamba2Config, Mamba2LM

# mamba_ssm's Mamba2.__init__ defaults, for what a checkpoint's ssm_cfg leaves out
MAMBA_SSM_DEFAULTS = dict(d_state=128, d_conv=4, expand=2, headdim=64, ngroups=1, chunk_size=256, rmsnorm=True,
                          norm_before_gate=False, bias=False, conv_bias=True, dt_limit=(0.0, math.inf))
MAMBA_SSM_GATED_NORM_EPS = 1e-5          # RMSNormGated(eps=1e-5) in mamba_ssm's Mamba2, whatever norm_epsilon says


def config_from_mamba_ssm(raw: dict, where: Path) -> Mamba2Config:
    reject_mamba_ssm_variants(raw, where, "Mamba-2")
    ssm = {**MAMBA_SSM_DEFAULTS, **raw["ssm_cfg"]}
    d_model = raw["d_model"]
    d_inner = ssm["expand"] * d_model
    if ssm.get("d_ssm") not in (None, d_inner):
        raise MQDeployError(f"{where} applies the SSM to {ssm['d_ssm']} of its {d_inner} channels (d_ssm) and a "
                            "gated MLP to the rest; only d_ssm = expand * d_model is supported")
    if ssm.get("D_has_hdim"):
        raise MQDeployError(f"{where} has a D per channel (D_has_hdim); only one D per head is supported")
    if not isinstance(d_inner, int) or not isinstance(ssm["headdim"], int) or d_inner % ssm["headdim"]:
        raise MQDeployError(f"{where}: expand * d_model = {d_inner} is not a multiple of headdim {ssm['headdim']}; "
                            "the config is not a valid Mamba-2 config")
    multiple = raw.get("pad_vocab_size_multiple", 8)
    vocab = raw.get("vocab_size", 50277)
    padded = math.ceil(vocab / multiple) * multiple      # as MambaLMHeadModel.__init__ does
    return Mamba2Config(
        vocab_size=padded, hidden_size=d_model, num_hidden_layers=raw["n_layer"], state_size=ssm["d_state"],
        expand=ssm["expand"], n_groups=ssm["ngroups"], num_heads=d_inner // ssm["headdim"], head_dim=ssm["headdim"],
        conv_kernel=ssm["d_conv"], use_bias=ssm["bias"], use_conv_bias=ssm["conv_bias"],
        layer_norm_epsilon=raw.get("norm_epsilon", 1e-5), residual_in_fp32=raw.get("residual_in_fp32", True),
        tie_word_embeddings=raw.get("tie_embeddings", True), chunk_size=ssm["chunk_size"],
        time_step_limit=tuple(ssm["dt_limit"]), norm_before_gate=ssm["norm_before_gate"], rms_norm=ssm["rmsnorm"],
        gated_norm_epsilon=MAMBA_SSM_GATED_NORM_EPS, extra={"mamba_ssm_vocab_size": vocab})


def load_mamba2_config(path) -> tuple[Mamba2Config, str]:
    """(config, source format "hf" or "mamba_ssm") of a Mamba-2 checkpoint directory, with the checks
    on the directory itself."""
    path = Path(path)
    if not path.exists():
        raise MQDeployError(f"model directory {path} does not exist; pass the Mamba-2 directory that holds "
                            "config.json and the weights")
    if not path.is_dir():
        raise MQDeployError(f"{path} is a file; pass the Mamba-2 model directory that holds config.json and the "
                            "weights")
    config_path = path / "config.json"
    if not config_path.is_file():
        raise MQDeployError(f"{path} has no config.json; a Hugging Face or mamba_ssm Mamba-2 checkpoint directory "
                            "has one")
    raw = _read_json(config_path)
    model_type = raw.get("model_type")
    ssm_cfg = raw.get("ssm_cfg")
    try:
        if model_type == "mamba2":
            return Mamba2Config.from_hf_dict(raw), "hf"
        if model_type is None and "d_model" in raw and "n_layer" in raw:
            if not isinstance(ssm_cfg or {}, dict):
                raise ValueError(f"ssm_cfg is a {type(ssm_cfg).__name__}, not an object")
            layer = (ssm_cfg or {}).get("layer", "Mamba1")
            if layer != "Mamba2":
                raise MQDeployError(f"{path} is a mamba_ssm {layer} checkpoint (ssm_cfg.layer {layer!r}), not Mamba-2; "
                                    "Mamba-1 models are read by load_model")
            return config_from_mamba_ssm(raw, path), "mamba_ssm"
    except (TypeError, ValueError, KeyError) as e:
        raise MQDeployError(f"{config_path} is not a valid Mamba-2 config ({type(e).__name__}: {e}); restore it "
                            "from the original checkpoint") from None
    if model_type in (None, "mamba"):
        raise MQDeployError(f"{config_path} is not a Mamba-2 config (model_type 'mamba2', or mamba_ssm's d_model, "
                            "n_layer and ssm_cfg.layer 'Mamba2'); a Mamba-1 model is read by load_model")
    raise MQDeployError(f"{config_path} has model_type {model_type!r}, which is not Mamba-2 (model_type 'mamba2')")


def load_mamba2(path, dtype: torch.dtype = torch.float32) -> LoadedModel:
    """Load a Mamba-2 checkpoint directory (HF, mamba_ssm, or ours) as a canonical Mamba2LM in eval mode."""
    path = Path(path)
    config, source_format = load_mamba2_config(path)
    return build_language_model(Mamba2LM, config, source_format, path, "Mamba-2", dtype)


def save_mamba2(model: Mamba2LM, out_dir, copy_tokenizer_from=None) -> Path:
    """Write `model` as config.json + model.safetensors (HF layout, which transformers'
    Mamba2ForCausalLM reads), atomically: the directory appears complete or not at all."""
    return save_model(model, out_dir, copy_tokenizer_from)          # the same files as a Mamba-1 model's
