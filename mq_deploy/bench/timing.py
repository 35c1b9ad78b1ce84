"""Latency statistics of repeated runs (wall clock around a synchronized call)."""

from __future__ import annotations

import time

import numpy as np


def time_calls(fn, synchronize, iterations: int, warmup: int) -> list[float]:
    """Seconds per call of `fn()`, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    synchronize()
    seconds = []
    for _ in range(iterations):
        start = time.perf_counter()
        fn()
        synchronize()
        seconds.append(time.perf_counter() - start)
    return seconds


def latency_stats(seconds: list[float], tokens_per_call: int) -> dict:
    ms = np.asarray(seconds) * 1e3
    median = float(np.median(ms))
    return {"median_ms": median, "p90_ms": float(np.percentile(ms, 90)), "p99_ms": float(np.percentile(ms, 99)),
            "tokens_per_s": tokens_per_call / (median / 1e3), "iterations": len(seconds)}
