"""Token ids given in a file instead of text: a .npy array or a JSON list (of lists) of integers.
What lets a model without a tokenizer (every mamba_ssm checkpoint) go through the whole chain."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import MQDeployError

TOKEN_FILE_SUFFIXES = (".npy", ".json")


def is_token_file(spec) -> bool:
    """--calib/--eval/--text/--tokens values ending in .npy or .json name token-id files."""
    return Path(str(spec)).suffix.lower() in TOKEN_FILE_SUFFIXES


def read_token_file(path, option: str = "--tokens") -> np.ndarray:
    """[b, L] int64 ids from a .npy array or a JSON list (of lists) of integers; 1-D becomes one row."""
    path = Path(path)
    if not path.is_file():
        raise MQDeployError(f"{option}: token file {path} does not exist")
    try:
        if path.suffix.lower() == ".npy":
            ids = np.load(path, allow_pickle=False)
        else:
            ids = np.asarray(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, OSError, UnicodeDecodeError, EOFError) as e:
        raise MQDeployError(f"{option}: cannot read token ids from {path} ({e}); give a .npy array or a JSON "
                            "list of integer lists") from None
    if ids.ndim == 1:
        ids = ids[None]
    if ids.ndim != 2 or ids.size == 0 or not np.issubdtype(ids.dtype, np.integer):
        raise MQDeployError(f"{option}: {path} must hold a non-empty [batch, length] array of integer token ids, "
                            f"got shape {ids.shape} dtype {ids.dtype}")
    return ids.astype(np.int64)


def check_token_range(ids: np.ndarray, vocab_size: int, where: str) -> None:
    if ids.min() < 0 or ids.max() >= vocab_size:
        raise MQDeployError(f"{where}: token ids must lie in [0, {vocab_size}) for this model (its vocabulary); "
                            f"got {ids.min()}..{ids.max()}: were they made for another model's tokenizer?")
