"""One loader for every model family: a Mamba-1 language model (models/loading.py) or a Vision Mamba
(models/vim_loading.py), told apart by what the path holds."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .loading import canonical_keys, load_model, read_state_dict
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


def load_checkpoint(path, dtype: torch.dtype = torch.float32):
    """The model at `path` (LoadedModel or LoadedVim: .model, .config, .path, .source_format)."""
    return load_vim(path, dtype=dtype) if is_vision_checkpoint(path) else load_model(path, dtype)


def read_canonical_state(path) -> dict[str, torch.Tensor]:
    """A checkpoint directory's weights under our parameter names."""
    state = read_state_dict(path)
    return canonical_vim_keys(state) if is_vision_checkpoint(path) else canonical_keys(state)
