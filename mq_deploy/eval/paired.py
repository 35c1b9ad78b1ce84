"""Paired comparisons of two models on the same evaluation windows: the mean difference of their
per-window NLL and a bootstrap confidence interval over windows. Two recipes a few hundredths of a
percent apart on one text are often not different at all; the interval says when they are."""

from __future__ import annotations

import math

import numpy as np

RESAMPLES = 2000
CONFIDENCE = 0.95
# Fewer windows than this decide nothing: a bootstrap over a handful of windows gives intervals far
# too narrow (one window: zero width). Windows are consecutive slices of one text and treated as
# independent, so even with enough of them the intervals lean optimistic.
MIN_WINDOWS = 20


def paired_difference(a, b, resamples: int = RESAMPLES, confidence: float = CONFIDENCE, seed: int = 0) -> dict:
    """a, b: per-window mean NLL (nats) of two models on the same windows, in the same order.
    Returns the mean of a - b and its percentile-bootstrap interval (windows resampled with
    replacement), in nats and as a perplexity change of a against b, in percent."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"paired windows must match: {a.shape} vs {b.shape}")
    d = a - b
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(resamples, d.size))].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    mean = float(d.mean())
    return {"mean_nll": mean, "low_nll": float(low), "high_nll": float(high), "windows": int(d.size),
            "confidence": confidence,
            # equal-length windows: exp(mean window NLL difference) is the perplexity ratio
            "percent": 100 * math.expm1(mean), "low_percent": 100 * math.expm1(low),
            "high_percent": 100 * math.expm1(high)}


def decisive_best(names: list[str], windows: dict[str, list[float]], **kwargs) -> dict:
    """Among models scored on the same windows: the one with the lowest mean NLL, and against each
    other model whether the interval of (other - best) lies above zero (best is better for sure).
    With fewer than MIN_WINDOWS windows nothing is decisive ("too_few_windows")."""
    best = min(names, key=lambda n: float(np.mean(windows[n])))
    enough = len(windows[best]) >= MIN_WINDOWS
    against = {}
    for other in names:
        if other != best:
            diff = paired_difference(windows[other], windows[best], **kwargs)
            against[other] = {**diff, "decisive": enough and diff["low_nll"] > 0}
    return {"best": best, "against": against, "too_few_windows": not enough,
            "decisive": enough and all(v["decisive"] for v in against.values())}
