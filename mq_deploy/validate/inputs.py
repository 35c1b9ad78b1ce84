"""Token ids to validate or benchmark on: windows of a text, or ids given in a file."""

from __future__ import annotations

import sys

from ..data.calibration import calibration_windows, short_text_note
from ..data.sources import load_tokens
from ..data.token_files import check_token_range, read_token_file
from ..errors import MQDeployError

__all__ = ["read_token_file", "token_feeds", "check_feed_settings"]


def check_feed_settings(samples: int, seq_len: int, batch: int) -> None:
    """Before any work: the window settings of validate."""
    if seq_len < 2 or samples < 1:
        raise MQDeployError("--seq-len must be at least 2 (the next-token loss needs a next token) and "
                            "--samples at least 1")
    if batch < 1:
        raise MQDeployError("--batch must be at least 1")


def token_feeds(tokenizer, vocab_size: int, text: str | None = None, token_file=None, samples: int = 4,
                seq_len: int = 256, batch: int = 1) -> list[dict]:
    """Feed dicts {"input_ids": [batch, L] int64}: `samples` windows of `seq_len` tokens of `text`
    (a file, 'pydoc-topics' or a token-id file), or the rows of `token_file`. `tokenizer`: the
    model's tokenizer or a function returning it (only a text needs one)."""
    check_feed_settings(samples, seq_len, batch)
    if token_file is not None:
        ids = read_token_file(token_file, "--tokens")
        check_token_range(ids, vocab_size, f"--tokens {token_file}")
        if len(ids) == 1 and ids.shape[1] > seq_len:
            # one row longer than a window (what a 1-D file is): a stream, cut into --samples windows of
            # --seq-len as a text is; as one window, 20,000 ids of a 50k vocabulary held 4 GB of logits
            # per runner
            ids = calibration_windows(ids[0], seq_len, samples, option="--seq-len").numpy()
    else:
        source = load_tokens(text, tokenizer, vocab_size, "--text", ids_options="--tokens or --text")
        if source.stream.size < seq_len:
            raise MQDeployError(f"{source.label} has {source.stream.size} tokens, fewer than --seq-len {seq_len}; "
                                "give a longer text or a smaller --seq-len")
        windows = calibration_windows(source.stream, seq_len, samples)
        note = short_text_note(windows, samples, source.label, "--text")
        if note:
            print(note, file=sys.stderr)
        ids = windows.numpy()
    if ids.shape[1] < 2:
        raise MQDeployError(f"token sequences must have at least 2 tokens (the next-token loss needs a next "
                            f"token); got length {ids.shape[1]}")
    return [{"input_ids": ids[i:i + batch]} for i in range(0, len(ids), batch)]
