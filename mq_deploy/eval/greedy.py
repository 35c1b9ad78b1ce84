"""Greedy generation through a prefill-only function ids -> logits (any backend)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .loglikelihood import LogitsFn


def greedy_generate(logits_fn: LogitsFn, prompt: Sequence[int], max_new_tokens: int, max_length: int,
                    stop: Callable[[list[int]], bool] = lambda new: False) -> list[int]:
    """The greedy continuation of `prompt`: up to max_new_tokens ids, ending early once stop(new) is true.

    Each step re-runs the whole prefill, so every backend works with its prefill graph alone; that is
    quadratic in the generated length, fine for the short answers of generative tasks (the paper's
    zero-shot protocol generates nothing). The prompt keeps its last max_length - max_new_tokens ids;
    at most max_length - 1 new ids (one prompt id always stays), so no step runs past max_length."""
    max_new_tokens = min(max_new_tokens, max_length - 1)
    ids = list(prompt)[-max(1, max_length - max_new_tokens):]
    new: list[int] = []
    for _ in range(max_new_tokens):
        logits = logits_fn(np.asarray([ids + new], dtype=np.int64))
        new.append(int(np.asarray(logits[0, -1]).argmax()))
        if stop(new):
            break
    return new
