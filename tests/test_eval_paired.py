"""Paired bootstrap intervals over evaluation windows (compare-recipes' decisions), against the
normal-theory interval of a mean and against planted differences."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mq_deploy.eval.paired import decisive_best, paired_difference


def test_interval_matches_normal_theory_on_many_windows():
    rng = np.random.default_rng(1)
    fp = rng.normal(1.5, 0.2, size=400)
    q = fp + rng.normal(0.01, 0.03, size=400)          # a paired shift of 0.01 nats, window noise 0.03
    d = q - fp
    result = paired_difference(q, fp)
    half = 1.96 * d.std(ddof=1) / math.sqrt(d.size)     # the textbook 95 % interval of a mean
    assert result["mean_nll"] == pytest.approx(d.mean(), rel=1e-12)
    assert result["low_nll"] == pytest.approx(d.mean() - half, abs=0.15 * half)
    assert result["high_nll"] == pytest.approx(d.mean() + half, abs=0.15 * half)
    assert result["percent"] == pytest.approx(100 * (math.exp(d.mean()) - 1), rel=1e-12)
    assert result["low_percent"] < result["percent"] < result["high_percent"]


def test_paired_noise_cancels():
    # windows differ wildly in difficulty, the two models by a constant 0.002 nats: paired, that is certain
    rng = np.random.default_rng(2)
    fp = rng.uniform(0.5, 3.0, size=50)
    result = paired_difference(fp + 0.002, fp)
    assert result["low_nll"] == pytest.approx(0.002, abs=1e-12) and result["high_nll"] == pytest.approx(0.002, abs=1e-12)


def test_best_is_decisive_only_where_the_interval_says_so():
    rng = np.random.default_rng(3)
    fp = rng.uniform(1.0, 2.0, size=64)
    windows = {"a": fp + 0.010 + rng.normal(0, 0.002, 64),      # clearly worse than b
               "b": fp + 0.001 + rng.normal(0, 0.002, 64),      # best
               "c": fp + 0.0012 + rng.normal(0, 0.002, 64)}     # b's equal within noise
    verdict = decisive_best(["a", "b", "c"], windows)
    assert verdict["best"] in ("b", "c")               # which one is best is noise ...
    tied = "c" if verdict["best"] == "b" else "b"
    assert verdict["against"]["a"]["decisive"] and not verdict["against"][tied]["decisive"]   # ... and says so
    assert not verdict["decisive"]
    del windows["c"]
    assert decisive_best(["a", "b"], windows)["decisive"]


def test_too_few_windows_decide_nothing():
    fp = np.linspace(1.0, 2.0, 5)
    verdict = decisive_best(["a", "b"], {"a": fp + 0.5, "b": fp})
    assert verdict["best"] == "b" and verdict["too_few_windows"] and not verdict["decisive"]


def test_mismatched_windows_are_refused():
    with pytest.raises(ValueError, match="paired windows must match"):
        paired_difference([1.0, 2.0], [1.0])


def test_seed_resampling_matches_the_exact_seed_bootstrap():
    # three seeds whose models differ by a constant per seed, on windows whose difficulty cancels in
    # the pairing: the statistic is then the mean of a resample of the three seed offsets, whose 27
    # equally likely outcomes give the exact interval
    offsets = np.array([0.000, 0.010, 0.030])
    fp = np.random.default_rng(4).uniform(0.5, 3.0, size=64)
    result = paired_difference(fp[None, :] + offsets[:, None], fp, resamples=20000)
    outcomes = np.sort([offsets[[i, j, k]].mean() for i in range(3) for j in range(3) for k in range(3)])
    assert result["mean_nll"] == pytest.approx(offsets.mean(), rel=1e-12)
    assert result["seeds"] == [3, 1]
    # each extreme has probability 1/27 > 2.5 %, so the exact 95 % interval is [min, max]
    assert result["low_nll"] == pytest.approx(np.quantile(outcomes, 0.025, method="inverted_cdf"), abs=1e-12)
    assert result["high_nll"] == pytest.approx(np.quantile(outcomes, 0.975, method="inverted_cdf"), abs=1e-12)


def test_one_lucky_seed_is_not_decisive():
    rng = np.random.default_rng(5)
    fp = rng.uniform(1.0, 2.0, size=128)
    lucky = fp[None, :] + np.array([0.001, 0.006, 0.007])[:, None] + rng.normal(0, 0.0005, (3, 128))
    steady = fp + 0.003 + rng.normal(0, 0.0005, 128)
    assert decisive_best(["lucky", "steady"], {"lucky": lucky[0], "steady": steady})["decisive"]   # seed 0 alone
    verdict = decisive_best(["lucky", "steady"], {"lucky": lucky, "steady": steady})
    assert verdict["best"] == "steady" and not verdict["decisive"]


def test_one_seed_as_a_matrix_is_the_plain_paired_interval():
    rng = np.random.default_rng(6)
    fp = rng.uniform(1.0, 2.0, size=40)
    q = fp + rng.normal(0.01, 0.01, 40)
    assert paired_difference(q[None, :], fp[None, :]) == paired_difference(q, fp) | {"seeds": [1, 1]}
