"""Perplexity over a token stream, in non-overlapping windows.

Each window of `seq_len` tokens starts from an empty state and scores tokens 2..seq_len (the first
token of a window has no context). Bits per byte divides the total negative log-likelihood by the
UTF-8 bytes those scored tokens cover, so models with different tokenizers compare; for a byte-level
model it equals the mean NLL in bits.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from ..progress import progress_bar


@dataclass
class PerplexityResult:
    scored_tokens: int
    scored_bytes: float
    nll_per_token: float          # nats
    perplexity: float             # per token
    bits_per_byte: float
    seq_len: int
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def evaluate_perplexity(model, token_ids, total_bytes: int, seq_len: int = 512, batch_size: int = 8,
                        max_tokens: int | None = None, progress: bool = True, desc: str = "perplexity"):
    """Evaluate `model` (ids [b, L] -> logits [b, L, V]) on a 1-D token sequence.

    total_bytes: UTF-8 length of the text the tokens came from (for bits per byte).
    max_tokens: evaluate only the first max_tokens tokens (bytes are scaled to match).
    """
    ids = torch.as_tensor(token_ids, dtype=torch.long).flatten()
    if max_tokens is not None and max_tokens < ids.numel():
        total_bytes = total_bytes * max_tokens / ids.numel()
        ids = ids[:max_tokens]
    if seq_len < 2:
        raise ValueError("seq_len must be at least 2")
    n_windows = ids.numel() // seq_len
    if n_windows == 0:
        raise ValueError(f"text too short: {ids.numel()} tokens, need at least seq_len={seq_len}")
    windows = ids[: n_windows * seq_len].view(n_windows, seq_len)
    nll, scored = 0.0, 0
    start = time.perf_counter()
    with progress_bar(total=n_windows * seq_len, desc=desc, unit="tok", disable=not progress) as bar:
        for i in range(0, n_windows, batch_size):
            batch = windows[i:i + batch_size]
            logits = model(batch[:, :-1])
            nll += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1),
                                   reduction="sum").item()
            scored += batch[:, 1:].numel()
            bar.update(batch.numel())
    # bytes covered by the scored tokens, assuming bytes spread evenly over tokens
    scored_bytes = total_bytes * scored / ids.numel()
    mean = nll / scored
    return PerplexityResult(scored_tokens=scored, scored_bytes=scored_bytes, nll_per_token=mean,
                            perplexity=math.exp(mean), bits_per_byte=nll / math.log(2) / scored_bytes,
                            seq_len=seq_len, seconds=time.perf_counter() - start)


def unigram_bits_per_token(token_ids) -> float:
    """Entropy (bits) of the token frequencies of the sequence itself: the best any unigram model,
    even one fitted on this very text, can do. A language model worth shipping is well below it."""
    ids = torch.as_tensor(token_ids, dtype=torch.long).flatten()
    counts = torch.bincount(ids).double()
    p = counts[counts > 0] / ids.numel()
    return float(-(p * torch.log2(p)).sum())
