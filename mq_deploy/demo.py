"""`mq-deploy demo`: the chain on the bundled tiny model, one summary table at the end."""

from __future__ import annotations

import time

from .api import evaluate_text
from .data import PYDOC_TOPICS
from .samples import HELDOUT_TEXT, demo_model_dir, sample_text


def run_demo(max_tokens: int | None = 131072) -> int:
    model_dir = demo_model_dir()
    start = time.perf_counter()
    print(f"mq-deploy demo: {model_dir}")
    texts = [(str(sample_text(HELDOUT_TEXT)), "Wikipedia articles held out from training"),
             (PYDOC_TOPICS, "CPython pydoc_data.topics (never seen)")]
    rows = []
    for text, label in texts:
        print(f"  evaluating on {label} ...", flush=True)
        result = evaluate_text(model_dir, text, max_tokens=max_tokens or None)
        rows.append((label, result))
    print()
    print("| held-out text | tokens scored | model bits/byte | unigram bits/byte | perplexity/byte |")
    print("|---|---:|---:|---:|---:|")
    for label, r in rows:
        print(f"| {label} | {r['scored_tokens']:,} | {r['bits_per_byte']:.3f} | "
              f"{r['unigram_bits_per_byte']:.3f} | {r['perplexity']:.3f} |")
    print(f"\nmodel: {rows[0][1]['parameters']:,} parameters, tokenizer {rows[0][1]['tokenizer']}; "
          f"unigram = entropy of the text's own byte frequencies (the best a unigram model can do)")
    print(f"done in {time.perf_counter() - start:.1f} s")
    return 0
