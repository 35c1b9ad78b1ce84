"""Calibration batches: windows of token ids cut from a text or a token-id file."""

from __future__ import annotations

import sys

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


def calibration_windows(token_ids, seq_len: int, num_samples: int, source: str | None = None,
                        option: str = "--calib-seq-len") -> torch.Tensor:
    """Up to `num_samples` consecutive, non-overlapping windows of `seq_len` tokens,
    [windows, seq_len]: as many as the text holds, never fewer than one. A short text gives fewer
    windows rather than overlapping ones (repeated tokens add no information and would make
    "32x512 tokens" a false count); callers report the real count (`short_text_note`)."""
    ids = torch.as_tensor(token_ids, dtype=torch.long).flatten()
    if seq_len < 1 or num_samples < 1:
        raise MQDeployError("calibration needs seq_len >= 1 and at least one sample")
    if ids.numel() < seq_len:
        raise MQDeployError(f"calibration text too short: {source + ' has ' if source else ''}{ids.numel()} tokens, "
                            f"a window needs {seq_len}; give a longer text or a smaller {option}")
    windows = min(num_samples, ids.numel() // seq_len)
    return ids[: seq_len * windows].view(windows, seq_len)


def short_text_note(windows: torch.Tensor, requested: int, label: str, option: str = "--calib") -> str | None:
    """One line saying the text held fewer windows than asked for, or None when it held them all."""
    got, seq_len = windows.shape
    if got >= requested:
        return None
    return (f"note: {option} {label} holds {got} windows of {seq_len} tokens, not the {requested} asked for; "
            f"using {got}x{seq_len} tokens (give a longer text for more)")


def calibration_batches(tokenizer, text: str, samples: int, seq_len: int, vocab_size: int | None = None,
                        option: str = "--calib"):
    """([samples, seq_len] token windows, label) from a text file, 'pydoc-topics' or a token-id file.
    `tokenizer`: the model's tokenizer or a function returning it (only a text needs one)."""
    check_window_counts(samples, seq_len)
    if vocab_size is None:
        vocab_size = (tokenizer if hasattr(tokenizer, "encode") else tokenizer()).vocab_size
    source = load_tokens(text, tokenizer, vocab_size, option)
    windows = calibration_windows(source.stream, seq_len, samples, source=source.label)
    note = short_text_note(windows, samples, source.label, option)
    if note:                                    # said before the long work, on stderr beside the progress bars
        print(note, file=sys.stderr)
    return windows, source.label
