"""Calibration batches: windows of token ids cut from a text or a token-id file."""

from __future__ import annotations

import torch

from ..errors import MQDeployError
from .sources import load_tokens


def check_window_counts(samples: int, seq_len: int, what: str = "calibration",
                        options=("--calib-samples", "--calib-seq-len")) -> None:
    """Before any work: a window needs at least 2 tokens (the next-token loss and the scan both need a
    next token) and there must be at least one window."""
    if seq_len < 2:
        raise MQDeployError(f"{options[1]} {seq_len}: {what} windows need at least 2 tokens")
    if samples < 1:
        raise MQDeployError(f"{options[0]} {samples}: {what} needs at least one window")


def calibration_windows(token_ids, seq_len: int, num_samples: int, seed: int = 0, source: str | None = None,
                        option: str = "--calib-seq-len") -> torch.Tensor:
    """`num_samples` windows of `seq_len` tokens, [num_samples, seq_len]. Consecutive non-overlapping
    windows when the text is long enough for them all, otherwise seeded random offsets."""
    ids = torch.as_tensor(token_ids, dtype=torch.long).flatten()
    if seq_len < 1 or num_samples < 1:
        raise MQDeployError("calibration needs seq_len >= 1 and at least one sample")
    if ids.numel() < seq_len:
        raise MQDeployError(f"calibration text too short: {source + ' has ' if source else ''}{ids.numel()} tokens, "
                            f"a window needs {seq_len}; give a longer text or a smaller {option}")
    if ids.numel() >= seq_len * num_samples:
        return ids[: seq_len * num_samples].view(num_samples, seq_len)
    g = torch.Generator().manual_seed(seed)
    offsets = torch.randint(0, ids.numel() - seq_len + 1, (num_samples,), generator=g)
    return torch.stack([ids[o:o + seq_len] for o in offsets.tolist()])


def calibration_batches(tokenizer, text: str, samples: int, seq_len: int, vocab_size: int | None = None,
                        option: str = "--calib"):
    """([samples, seq_len] token windows, label) from a text file, 'pydoc-topics' or a token-id file.
    `tokenizer`: the model's tokenizer or a function returning it (only a text needs one)."""
    check_window_counts(samples, seq_len)
    if vocab_size is None:
        vocab_size = (tokenizer if hasattr(tokenizer, "encode") else tokenizer()).vocab_size
    source = load_tokens(text, tokenizer, vocab_size, option)
    return calibration_windows(source.stream, seq_len, samples, source=source.label), source.label
