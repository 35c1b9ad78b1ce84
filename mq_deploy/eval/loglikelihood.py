"""Log-likelihood of continuation tokens given context tokens, for any function ids -> logits.

This is what lm-eval's `loglikelihood` requests ask (docs/lm_eval.md): the sum over the
continuation of log softmax(logits) at each continuation token, and whether greedy argmax decoding
would have produced the whole continuation. No lm-eval import here: the same scoring serves any
backend (torch, ONNX Runtime, TensorRT) through one `logits_fn`.

Length: a request of more than max_length + 1 tokens keeps its last max_length + 1 (left
truncation: the oldest context goes first, as lm-eval's Hugging Face model does). A continuation
longer than max_length cannot be scored and is refused.

Batching: requests run longest first, right-padded with token 0. The model is causal (causal
convolution, forward scan), so padding after a row's last real token changes none of that row's
logits; only the batch shape, hence float rounding, differs from running rows alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ..errors import MQDeployError
from ..progress import progress_bar

LogitsFn = Callable[[np.ndarray], np.ndarray]     # int64 ids [batch, length] -> float logits [batch, length, vocab]


def scoring_window(context: Sequence[int], continuation: Sequence[int], max_length: int) -> list[int]:
    """The model input for one request: context + continuation without its last token, left-truncated
    to max_length. Its last len(continuation) positions predict the continuation."""
    if not continuation:
        raise MQDeployError("a loglikelihood request has an empty continuation; there is nothing to score")
    if not context:
        raise MQDeployError("a loglikelihood request has an empty context: the first continuation token has "
                            "nothing to be predicted from (lm-eval puts the end-of-text token there)")
    if len(continuation) > max_length:
        raise MQDeployError(f"a continuation of {len(continuation)} tokens is longer than max_length={max_length}; "
                            "raise max_length in --model_args")
    whole = [*context, *continuation][-(max_length + 1):]
    return whole[:-1]


def continuation_logprob(logits: np.ndarray, continuation: Sequence[int]) -> tuple[float, bool]:
    """(sum of log-probabilities, greedy) of `continuation` under `logits` [n, vocab], row i predicting
    continuation[i]. Log-softmax in float64, so the sum does not depend on the graph's float type."""
    rows = np.asarray(logits, dtype=np.float64)
    peak = rows.max(-1, keepdims=True)
    log_probs = rows - peak - np.log(np.exp(rows - peak).sum(-1, keepdims=True))
    targets = np.asarray(continuation, dtype=np.int64)
    picked = log_probs[np.arange(len(targets)), targets]
    return float(picked.sum()), bool((rows.argmax(-1) == targets).all())


def score_continuations(logits_fn: LogitsFn, requests: Sequence[tuple[Sequence[int], Sequence[int]]],
                        max_length: int, batch_size: int, progress: bool = True) -> list[tuple[float, bool]]:
    """[(logprob, greedy)] for each (context ids, continuation ids), in the order given."""
    if batch_size < 1 or max_length < 1:
        raise MQDeployError(f"batch_size and max_length must be at least 1 (got {batch_size}, {max_length})")
    windows = [scoring_window(context, continuation, max_length) for context, continuation in requests]
    order = sorted(range(len(requests)), key=lambda i: -len(windows[i]))
    results: list[tuple[float, bool] | None] = [None] * len(requests)
    with progress_bar(total=len(requests), desc="loglikelihood", unit="req", disable=not progress) as bar:
        for start in range(0, len(order), batch_size):
            batch = order[start:start + batch_size]
            ids = np.zeros((len(batch), len(windows[batch[0]])), dtype=np.int64)
            for row, i in enumerate(batch):
                ids[row, :len(windows[i])] = windows[i]
            logits = logits_fn(ids)
            for row, i in enumerate(batch):
                end, n = len(windows[i]), len(requests[i][1])
                results[i] = continuation_logprob(logits[row, end - n:end], requests[i][1])
            bar.update(len(batch))
    return results
