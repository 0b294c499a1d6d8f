"""tracing/stats.py: percentiles and the stated regression test on planted distributions."""
import math

import numpy as np

from tracing import stats


def test_percentiles_and_summary():
    assert stats.percentile([1, 2, 3, 4], 50) == 2.5
    assert math.isclose(stats.percentile(list(range(101)), 95), 95.0)
    assert math.isnan(stats.percentile([], 50))
    s = stats.summarize([0.1, 0.2, None, 0.3])
    assert s["n"] == 3 and math.isclose(s["p50"], 0.2) and s["max"] == 0.3
    assert stats.summarize([])["n"] == 0


def test_clear_shift_is_a_regression():
    rng = np.random.default_rng(1)
    old = list(0.010 + rng.uniform(0, 0.004, 8))
    new = list(0.200 + rng.uniform(0, 0.050, 8))
    c = stats.compare(old, new)
    assert c.verdict == "regression"
    assert c.p_worse < 0.001 and c.ratio > 10
    # the mirror image is an improvement, not a regression
    assert stats.compare(new, old).verdict == "improvement"


def test_three_vs_three_complete_separation_is_exactly_alpha():
    c = stats.compare([0.01, 0.011, 0.012], [0.1, 0.2, 0.3])
    assert math.isclose(c.p_worse, 0.05) and c.verdict == "regression"
    # one overlap at N=3 is not significant
    assert stats.compare([0.01, 0.011, 0.15], [0.1, 0.2, 0.3]).verdict == "same"


def test_significant_but_small_effects_are_not_flagged():
    # every new sample 3 ms larger: significant, but below the 5 ms absolute gate
    old = [0.010, 0.011, 0.012, 0.013, 0.014]
    new = [v + 0.003 for v in old]
    c = stats.compare(old, new)
    assert c.p_worse <= 0.05 and c.verdict == "same"
    # 100 ms more on a 1 s wall: above 5 ms but only 1.1x
    old = [1.00, 1.01, 1.02, 1.03, 1.04]
    c = stats.compare(old, [v + 0.1 for v in old])
    assert c.p_worse <= 0.05 and c.ratio < 1.2 and c.verdict == "same"
    # with looser gates the same data is flagged
    assert stats.compare(old, [v + 0.1 for v in old], min_ratio=1.05).verdict == "regression"


def test_overlapping_noise_is_same_and_degenerate_inputs():
    rng = np.random.default_rng(7)
    false_alarms = 0
    for _ in range(200):  # same distribution on both sides: the gates keep false alarms rare
        a, b = list(rng.lognormal(-4, 0.5, 5)), list(rng.lognormal(-4, 0.5, 5))
        false_alarms += stats.compare(a, b).verdict == "regression"
    assert false_alarms <= 10
    assert stats.compare([0, 0, 0], [0, 0, 0]).verdict == "same"
    assert stats.compare([0.0, 0.0, 0.0], [0.1, 0.1, 0.1]).ratio == math.inf
    assert stats.compare([0.1], [0.2, 0.3]).verdict == "n/a"
    assert stats.compare([0.1, float("nan"), 0.2], [0.2, 0.3]).n_old == 2
