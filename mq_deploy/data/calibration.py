"""Calibration batches: windows of token ids cut from a text or a token array."""

from __future__ import annotations

import torch

from ..errors import MQDeployError
from .text import resolve_text_source


def calibration_windows(token_ids, seq_len: int, num_samples: int, seed: int = 0) -> torch.Tensor:
    """`num_samples` windows of `seq_len` tokens, [num_samples, seq_len]. Consecutive non-overlapping
    windows when the text is long enough for them all, otherwise seeded random offsets."""
    ids = torch.as_tensor(token_ids, dtype=torch.long).flatten()
    if seq_len < 1 or num_samples < 1:
        raise MQDeployError("calibration needs seq_len >= 1 and at least one sample")
    if ids.numel() < seq_len:
        raise MQDeployError(f"calibration text too short: {ids.numel()} tokens, a window needs {seq_len}; "
                            "give a longer text or a smaller --calib-seq-len")
    if ids.numel() >= seq_len * num_samples:
        return ids[: seq_len * num_samples].view(num_samples, seq_len)
    g = torch.Generator().manual_seed(seed)
    offsets = torch.randint(0, ids.numel() - seq_len + 1, (num_samples,), generator=g)
    return torch.stack([ids[o:o + seq_len] for o in offsets.tolist()])


def calibration_batches(tokenizer, text: str, samples: int, seq_len: int):
    """([samples, seq_len] token windows, label) from a text file or 'pydoc-topics'."""
    body, label = resolve_text_source(text)
    return calibration_windows(tokenizer.encode(body), seq_len, samples), label
