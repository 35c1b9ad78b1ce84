"""Evaluate a loaded model on a text source (file or 'pydoc-topics')."""

from __future__ import annotations

from pathlib import Path

from ..data import resolve_text_source
from .perplexity import evaluate_perplexity, unigram_bits_per_token


def evaluate_model(model, tokenizer, text: str, seq_len: int = 512, batch_size: int = 8,
                   max_tokens: int | None = None, progress: bool = True) -> dict:
    """Perplexity and bits per byte of a loaded model on a text (a file path or 'pydoc-topics'),
    next to the unigram entropy of the same tokens."""
    body, label = resolve_text_source(text)
    ids = tokenizer.encode(body)
    if max_tokens:
        ids = ids[:max_tokens]
    n_bytes = len(tokenizer.decode(ids).encode("utf-8")) if max_tokens else len(body.encode("utf-8"))
    result = evaluate_perplexity(model, ids, n_bytes, seq_len=seq_len, batch_size=batch_size,
                                 progress=progress, desc=f"eval {Path(label).name}")
    return {"text": label, "tokenizer": tokenizer.name, "parameters": sum(p.numel() for p in model.parameters()),
            **result.to_dict(), "unigram_bits_per_byte": unigram_bits_per_token(ids) * len(ids) / n_bytes}
