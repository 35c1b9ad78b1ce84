"""Paired comparisons of two models on the same evaluation windows: the mean difference of their
per-window NLL and a bootstrap confidence interval over windows. Two recipes a few hundredths of a
percent apart on one text are often not different at all; the interval says when they are.

A recipe with random rotations is a distribution over models, one per seed: on the demo model at
W4A16, QuaRot's change against FP ranges +0.17 % … +0.45 % over four seeds, wider than any window
interval. Given several seeds ([seeds, windows]), the bootstrap resamples seeds too (each model's
independently, windows jointly), so a lead that one lucky seed gave is not called decisive."""

from __future__ import annotations

import math

import numpy as np

RESAMPLES = 2000
CONFIDENCE = 0.95
# Fewer windows than this decide nothing: a bootstrap over a handful of windows gives intervals far
# too narrow (one window: zero width). Windows are consecutive slices of one text and treated as
# independent, so even with enough of them the intervals lean optimistic.
MIN_WINDOWS = 20


def _per_seed(x) -> np.ndarray:
    """[windows] or [seeds, windows] -> [seeds, windows] float64."""
    x = np.asarray(x, dtype=np.float64)
    return x[None, :] if x.ndim == 1 else x


def _seed_weights(rng, seeds: int, resamples: int) -> np.ndarray:
    """[resamples, seeds]: the share of each seed in a resample of `seeds` seeds with replacement."""
    if seeds == 1:
        return np.ones((resamples, 1))
    draws = rng.integers(0, seeds, size=(resamples, seeds))
    return np.stack([np.bincount(row, minlength=seeds) for row in draws]) / seeds


def paired_difference(a, b, resamples: int = RESAMPLES, confidence: float = CONFIDENCE, seed: int = 0) -> dict:
    """a, b: per-window mean NLL (nats) of two models on the same windows, in the same order:
    [windows], or [seeds, windows] for a recipe run at several seeds. Returns the mean of a - b
    (seed-averaged) and its percentile-bootstrap interval (windows resampled with replacement, the
    same for both; seeds resampled with replacement, each model's own), in nats and as a perplexity
    change of a against b, in percent."""
    a, b = _per_seed(a), _per_seed(b)
    if a.shape[1:] != b.shape[1:] or a.ndim != 2 or b.ndim != 2 or a.size == 0 or b.size == 0:
        raise ValueError(f"paired windows must match: {a.shape} vs {b.shape}")
    windows = a.shape[1]
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, windows, size=(resamples, windows))
    if a.shape[0] == 1 and b.shape[0] == 1:         # one model each: resample the paired differences
        d = a[0] - b[0]
        means = d[picks].mean(axis=1)
    else:
        resampled_a = _seed_weights(rng, a.shape[0], resamples) @ a       # [resamples, windows]
        resampled_b = _seed_weights(rng, b.shape[0], resamples) @ b
        means = np.take_along_axis(resampled_a - resampled_b, picks, axis=1).mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    mean = float(a.mean() - b.mean())
    return {"mean_nll": mean, "low_nll": float(low), "high_nll": float(high), "windows": int(windows),
            "seeds": [int(a.shape[0]), int(b.shape[0])], "confidence": confidence,
            # equal-length windows: exp(mean window NLL difference) is the perplexity ratio
            "percent": 100 * math.expm1(mean), "low_percent": 100 * math.expm1(low),
            "high_percent": 100 * math.expm1(high)}


def decisive_best(names: list[str], windows: dict[str, list[float]], **kwargs) -> dict:
    """Among models scored on the same windows ([windows] or [seeds, windows] each): the one with the
    lowest mean NLL, and against each other model whether the interval of (other - best) lies above
    zero (best is better for sure). With fewer than MIN_WINDOWS windows nothing is decisive
    ("too_few_windows")."""
    best = min(names, key=lambda n: float(np.mean(windows[n])))
    enough = _per_seed(windows[best]).shape[1] >= MIN_WINDOWS
    against = {}
    for other in names:
        if other != best:
            diff = paired_difference(windows[other], windows[best], **kwargs)
            against[other] = {**diff, "decisive": enough and diff["low_nll"] > 0}
    return {"best": best, "against": against, "too_few_windows": not enough,
            "decisive": enough and all(v["decisive"] for v in against.values())}
