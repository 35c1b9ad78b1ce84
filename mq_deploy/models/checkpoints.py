"""One loader for every model family: a Mamba-1 language model (models/loading.py), a Mamba-2 one
(models/mamba2_loading.py) or a Vision Mamba (models/vim_loading.py), told apart by what the path holds."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .loading import canonical_keys, load_model, read_state_dict
from .mamba2_loading import load_mamba2
from .vim_loading import canonical_vim_keys, load_vim


def is_vision_checkpoint(path) -> bool:
    """An official Vim .pth file, or a directory whose config.json says model_type "vim"."""
    path = Path(path)
    if path.is_file():
        return path.suffix in (".pth", ".pt")
    try:
        return json.loads((path / "config.json").read_text(encoding="utf-8")).get("model_type") == "vim"
    except (OSError, ValueError, AttributeError):
        return False


def is_mamba2_checkpoint(path) -> bool:
    """A directory whose config.json is a Mamba-2 language model's (HF model_type "mamba2", or mamba_ssm's
    ssm_cfg.layer "Mamba2")."""
    try:
        raw = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    ssm_cfg = raw.get("ssm_cfg") if isinstance(raw, dict) else None
    return isinstance(raw, dict) and (raw.get("model_type") == "mamba2"
                                      or (isinstance(ssm_cfg, dict) and ssm_cfg.get("layer") == "Mamba2"))


def load_checkpoint(path, dtype: torch.dtype = torch.float32):
    """The model at `path` (LoadedModel or LoadedVim: .model, .config, .path, .source_format)."""
    if is_vision_checkpoint(path):
        return load_vim(path, dtype=dtype)
    return load_mamba2(path, dtype) if is_mamba2_checkpoint(path) else load_model(path, dtype)


def load_language_config(path):
    """(config, source format) of a language-model directory, Mamba-1 or Mamba-2: checks it before the
    weights are read (one-line errors for a missing or foreign config)."""
    from .loading import load_config
    from .mamba2_loading import load_mamba2_config
    return load_mamba2_config(path) if is_mamba2_checkpoint(path) else load_config(path)


def read_canonical_state(path) -> dict[str, torch.Tensor]:
    """A checkpoint directory's weights under our parameter names."""
    state = read_state_dict(path)
    return canonical_vim_keys(state) if is_vision_checkpoint(path) else canonical_keys(state)
