"""Token ids to validate or benchmark on: windows of a text, or ids given in a file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..data.calibration import calibration_windows
from ..data.text import resolve_text_source
from ..errors import MQDeployError


def read_token_file(path) -> np.ndarray:
    """[b, L] int64 ids from a .npy array or a JSON list (of lists) of integers."""
    path = Path(path)
    if not path.is_file():
        raise MQDeployError(f"token file {path} does not exist")
    try:
        ids = np.load(path) if path.suffix == ".npy" else np.asarray(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, OSError) as e:
        raise MQDeployError(f"cannot read token ids from {path} ({e}); give a .npy array or a JSON list of "
                            "integer lists") from None
    if ids.ndim == 1:
        ids = ids[None]
    if ids.ndim != 2 or ids.size == 0 or not np.issubdtype(ids.dtype, np.integer):
        raise MQDeployError(f"{path}: token ids must be a non-empty [batch, length] array of integers, "
                            f"got shape {ids.shape} dtype {ids.dtype}")
    return ids.astype(np.int64)


def token_feeds(tokenizer, vocab_size: int, text: str | None = None, token_file=None, samples: int = 4,
                seq_len: int = 256, batch: int = 1) -> list[dict]:
    """Feed dicts {"input_ids": [batch, L] int64}: `samples` windows of `seq_len` tokens of `text`
    (a file or 'pydoc-topics'), or the rows of `token_file`."""
    if token_file is not None:
        ids = read_token_file(token_file)
    else:
        if seq_len < 2 or samples < 1:
            raise MQDeployError("--seq-len must be at least 2 (the next-token loss needs a next token) and "
                                "--samples at least 1")
        body, label = resolve_text_source(text)
        tokens = tokenizer.encode(body)
        if len(tokens) < seq_len:
            raise MQDeployError(f"{label} has {len(tokens)} tokens, fewer than --seq-len {seq_len}; give a "
                                "longer text or a smaller --seq-len")
        ids = calibration_windows(tokens, seq_len, samples).numpy()
    if ids.shape[1] < 2:
        raise MQDeployError(f"token sequences must have at least 2 tokens (the next-token loss needs a next "
                            f"token); got length {ids.shape[1]}")
    if ids.min() < 0 or ids.max() >= vocab_size:
        raise MQDeployError(f"token ids must lie in [0, {vocab_size}) for this model; got {ids.min()}..{ids.max()}")
    if batch < 1:
        raise MQDeployError("--batch must be at least 1")
    return [{"input_ids": ids[i:i + batch]} for i in range(0, len(ids), batch)]
