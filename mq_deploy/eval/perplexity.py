"""Perplexity over a token stream, in non-overlapping windows.

Each window of `seq_len` tokens starts from an empty state and scores tokens 2..seq_len (the first
token of a window has no context). Bits per byte divides the total negative log-likelihood by the
UTF-8 bytes those scored tokens cover, so models with different tokenizers compare; for a byte-level
model it equals the mean NLL in bits.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F

from ..errors import MQDeployError
from ..progress import progress_bar
from .fidelity import FPReference, window_kl


@dataclass
class PerplexityResult:
    scored_tokens: int
    scored_bytes: float | None    # None for token ids given without their text
    nll_per_token: float          # nats
    perplexity: float             # per token
    bits_per_byte: float | None
    seq_len: int
    seconds: float
    window_nll: list[float] = field(default_factory=list)   # mean NLL (nats) of each window, in text order:
                                                            # what paired comparisons resample
    kl_per_token: float | None = None       # mean KL(FP ‖ this model) per scored token, nats (given a reference)
    window_kl: list[float] | None = None    # its mean per window, in text order

    def to_dict(self) -> dict:
        return asdict(self)


def check_eval_windows(seq_len: int, batch_size: int = 1, max_tokens: int | None = None) -> None:
    """Before any work: settings no evaluation can run with."""
    if seq_len < 2:
        raise MQDeployError(f"--seq-len {seq_len}: a window needs at least 2 tokens (the first token of a "
                            "window has no context, so it is not scored); use e.g. --seq-len 512")
    if batch_size < 1:
        raise MQDeployError(f"--batch-size {batch_size}: give at least 1 window per forward pass")
    if max_tokens is not None and max_tokens < seq_len:
        raise MQDeployError(f"--max-tokens {max_tokens} is less than one window of --seq-len {seq_len}; "
                            "give more tokens or a smaller --seq-len")


@torch.no_grad()
def evaluate_perplexity(model, token_ids, total_bytes: int | None, seq_len: int = 512, batch_size: int = 8,
                        max_tokens: int | None = None, progress: bool = True, desc: str = "perplexity",
                        label: str = "the text", reference: FPReference | None = None):
    """Evaluate `model` (ids [b, L] -> logits [b, L, V]) on a 1-D token sequence.

    total_bytes: UTF-8 length of the text the tokens came from (for bits per byte; None: not known).
    max_tokens: evaluate only the first max_tokens tokens (bytes are scaled to match).
    A logit that is NaN or inf stops the evaluation with one error: a perplexity of NaN is not a result.
    reference: the FP model's log-probs (eval/fidelity.py) to measure KL(FP ‖ model) against; evaluating
    the reference's own model fills it without a second forward (and scores KL 0).
    """
    check_eval_windows(seq_len, batch_size, max_tokens)
    ids = torch.as_tensor(token_ids, dtype=torch.long).flatten()
    if max_tokens is not None and max_tokens < ids.numel():
        if total_bytes is not None:
            total_bytes = total_bytes * max_tokens / ids.numel()
        ids = ids[:max_tokens]
    n_windows = ids.numel() // seq_len
    if n_windows == 0:
        raise MQDeployError(f"{label} has {ids.numel()} tokens, fewer than one window of --seq-len {seq_len}; "
                            "give a longer text or a smaller --seq-len")
    windows = ids[: n_windows * seq_len].view(n_windows, seq_len)
    nll, scored, window_nll, kl = 0.0, 0, [], []
    start = time.perf_counter()
    with progress_bar(total=n_windows * seq_len, desc=desc, unit="tok", disable=not progress) as bar:
        for i in range(0, n_windows, batch_size):
            batch = windows[i:i + batch_size]
            logits = model(batch[:, :-1])
            if not torch.isfinite(logits).all():
                bad = int((~torch.isfinite(logits)).sum())
                raise MQDeployError(f"the model produced NaN/inf logits on {label} ({bad} values in windows "
                                    f"{i + 1}..{i + len(batch)}); no perplexity can be reported. Its weights are "
                                    "finite, so an activation overflows: check the checkpoint (and a quantized "
                                    "artifact's scales)")
            # one window at a time: the log-softmax temporaries (float64 for the KL) of a 50k vocabulary
            # stay ~200 MB a window instead of 1.6 GB a batch of 8
            for w in range(len(batch)):
                token_nll = F.cross_entropy(logits[w], batch[w, 1:], reduction="none").double()
                nll += token_nll.sum().item()
                window_nll.append(token_nll.mean().item())
                if reference is not None:
                    own = logits[w:w + 1] if reference.model is model else None
                    kl += window_kl(reference.logprobs(i + w, batch[w:w + 1, :-1], own), logits[w:w + 1]).tolist()
            scored += batch[:, 1:].numel()
            bar.update(batch.numel())
    # bytes covered by the scored tokens, assuming bytes spread evenly over tokens
    scored_bytes = total_bytes * scored / ids.numel() if total_bytes else None
    mean = nll / scored
    return PerplexityResult(scored_tokens=scored, scored_bytes=scored_bytes, nll_per_token=mean,
                            perplexity=math.exp(mean),
                            bits_per_byte=nll / math.log(2) / scored_bytes if scored_bytes else None,
                            seq_len=seq_len, seconds=time.perf_counter() - start, window_nll=window_nll,
                            # equal-length windows: the mean of window means is the mean per token
                            kl_per_token=sum(kl) / len(kl) if kl else None, window_kl=kl or None)


def unigram_bits_per_token(token_ids) -> float:
    """Entropy (bits) of the token frequencies of the sequence itself: the best any unigram model,
    even one fitted on this very text, can do. A language model worth shipping is well below it."""
    ids = torch.as_tensor(token_ids, dtype=torch.long).flatten()
    counts = torch.bincount(ids).double()
    p = counts[counts > 0] / ids.numel()
    return float(-(p * torch.log2(p)).sum())
