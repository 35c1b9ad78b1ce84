"""Evaluate a loaded model on a text source (a file, 'pydoc-topics', or a token-id file)."""

from __future__ import annotations

from pathlib import Path

from ..data.sources import load_tokens
from ..errors import MQDeployError
from .perplexity import check_eval_windows, evaluate_perplexity, unigram_bits_per_token


def evaluate_model(model, tokenizer, text: str, seq_len: int = 512, batch_size: int = 8,
                   max_tokens: int | None = None, progress: bool = True, option: str = "--text",
                   reference=None) -> dict:
    """Perplexity and bits per byte of a loaded model on a text (a file path or 'pydoc-topics'),
    next to the unigram entropy of the same tokens. Token ids (.npy/.json) are scored as one
    sequence; they have no bytes, so the bits-per-byte figures are None for them.
    `tokenizer`: the model's tokenizer, or a function returning it (only a text needs one).
    reference: an eval.fidelity.FPReference, to add KL(FP ‖ model) per token and per window."""
    check_eval_windows(seq_len, batch_size, max_tokens)
    source = load_tokens(text, tokenizer, model.config.vocab_size, option)
    ids = source.stream
    n_bytes = source.n_bytes
    if max_tokens is not None and max_tokens < ids.size:
        if n_bytes is not None:
            tok = tokenizer if hasattr(tokenizer, "encode") else tokenizer()
            n_bytes = len(tok.decode(ids[:max_tokens]).encode("utf-8"))
        ids = ids[:max_tokens]
    if ids.size < seq_len:
        raise MQDeployError(f"{source.label} has {ids.size} tokens, fewer than one window of --seq-len {seq_len}; "
                            "give a longer text or a smaller --seq-len")
    result = evaluate_perplexity(model, ids, n_bytes, seq_len=seq_len, batch_size=batch_size,
                                 progress=progress, desc=f"eval {Path(source.label).name}", label=source.label,
                                 reference=reference)
    unigram = unigram_bits_per_token(ids)
    return {"text": source.label, "tokenizer": source.tokenizer,
            "parameters": sum(p.numel() for p in model.parameters()),
            **result.to_dict(), "unigram_bits_per_token": unigram,
            "unigram_bits_per_byte": unigram * len(ids) / n_bytes if n_bytes else None}
