"""The functions behind the CLI verbs, callable from Python with the same meaning."""

from __future__ import annotations

from pathlib import Path

from .data import resolve_text_source
from .eval import evaluate_perplexity, unigram_bits_per_token
from .models.loading import load_model


def evaluate_text(model_dir, text: str, seq_len: int = 512, batch_size: int = 8,
                  max_tokens: int | None = None, progress: bool = True) -> dict:
    """Perplexity and bits per byte of a model directory on a text (a file path or 'pydoc-topics'),
    next to the unigram entropy of the same tokens."""
    loaded = load_model(model_dir)
    body, label = resolve_text_source(text)
    ids = loaded.tokenizer.encode(body)
    if max_tokens is not None:
        ids = ids[:max_tokens]
    n_bytes = len(loaded.tokenizer.decode(ids).encode("utf-8")) if max_tokens else len(body.encode("utf-8"))
    result = evaluate_perplexity(loaded.model, ids, n_bytes, seq_len=seq_len, batch_size=batch_size,
                                 progress=progress, desc=f"eval {Path(label).name}")
    unigram_bits = unigram_bits_per_token(ids) * len(ids) / n_bytes
    return {"model": str(model_dir), "text": label, "tokenizer": loaded.tokenizer.name,
            "parameters": sum(p.numel() for p in loaded.model.parameters()),
            **result.to_dict(), "unigram_bits_per_byte": unigram_bits}
