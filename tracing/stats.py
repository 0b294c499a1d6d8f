"""Statistics for snapshot summaries and diffs (pure: numbers in, numbers out, no I/O).

Percentiles: numpy's default (linear interpolation between order statistics), so p50 of
[1, 2, 3, 4] is 2.5 and p95 of 3 samples lies between the 2nd and the 3rd.

The regression test (`compare`), stated once here and used by `tracing/diff.py`:

1. Significance: a one-sided Mann-Whitney U test (scipy.stats.mannwhitneyu, exact p-values for
   small samples without ties) of H1 "NEW tends to be larger than OLD". It compares ranks, so one
   slow outlier does not decide it and no normality is assumed (latencies are skewed). The result
   is significant when p <= alpha (default 0.05).
   With 3 samples per side the smallest possible exact p is 1/C(6,3) = 0.05: only a complete
   separation (every new sample above every old one) is significant. Take N >= 5 (smallest p
   1/252) for anything finer; the CLI default is N = 5.
2. Effect size, so that a significant but tiny shift (typical of a quiet box: 3 ms more run-queue
   wait in every sample) is not flagged: the ratio of medians new/old must be >= min_ratio
   (default 1.2, i.e. 20 % worse) AND the medians must differ by >= min_abs seconds (default
   5 ms: below that, scheduler noise on a shared machine dominates).

Verdicts: "regression" (1 and 2 hold with NEW larger), "improvement" (the mirror image: one-sided
test the other way, ratio <= 1/min_ratio, same absolute gate), "same" otherwise, and "n/a" when
either side has fewer than 2 samples (no test possible).
Many metrics are tested at once without a multiple-comparison correction; the effect-size gate is
what keeps quiet-vs-quiet diffs clean (see tests/test_snapshot.py for how that was checked).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

ALPHA = 0.05
MIN_RATIO = 1.2
MIN_ABS_S = 0.005


def percentile(values, q: float) -> float:
    """q in 0..100; NaN for an empty sequence."""
    v = np.asarray([x for x in values if x is not None], dtype=float)
    if v.size == 0:
        return math.nan
    return float(np.percentile(v, q))


def summarize(values) -> dict:
    """{n, p50, p95, mean, min, max} of a sequence of numbers (NaN fields when empty)."""
    v = [float(x) for x in values if x is not None]
    if not v:
        return {"n": 0, "p50": math.nan, "p95": math.nan, "mean": math.nan, "min": math.nan, "max": math.nan}
    return {"n": len(v), "p50": percentile(v, 50), "p95": percentile(v, 95), "mean": float(np.mean(v)),
            "min": min(v), "max": max(v)}


@dataclass
class Comparison:
    n_old: int
    n_new: int
    median_old: float
    median_new: float
    ratio: float          # median_new / median_old (inf when old is 0 and new is not; 1.0 when both 0)
    delta: float          # median_new - median_old
    p_worse: float        # one-sided p-value for "new > old"
    p_better: float       # one-sided p-value for "new < old"
    verdict: str          # regression | improvement | same | n/a

    def to_dict(self) -> dict:
        return asdict(self)


def ratio_of(new: float, old: float) -> float:
    if old == 0:
        return 1.0 if new == 0 else math.inf
    return new / old


def _mwu(a, b, alternative: str) -> float:
    from scipy.stats import mannwhitneyu
    if len(set(a) | set(b)) == 1:  # all identical: no evidence either way (scipy would warn)
        return 1.0
    return float(mannwhitneyu(b, a, alternative=alternative).pvalue)


def compare(old, new, alpha: float = ALPHA, min_ratio: float = MIN_RATIO, min_abs: float = MIN_ABS_S) -> Comparison:
    """Compare two samples of one metric (seconds, or any unit where min_abs makes sense)."""
    a = [float(x) for x in old if x is not None and math.isfinite(x)]
    b = [float(x) for x in new if x is not None and math.isfinite(x)]
    ma = float(np.median(a)) if a else math.nan
    mb = float(np.median(b)) if b else math.nan
    if len(a) < 2 or len(b) < 2:
        return Comparison(len(a), len(b), ma, mb, math.nan, mb - ma, math.nan, math.nan, "n/a")
    p_worse = _mwu(a, b, "greater")   # H1: new is stochastically greater
    p_better = _mwu(a, b, "less")
    r = ratio_of(mb, ma)
    d = mb - ma
    verdict = "same"
    if p_worse <= alpha and r >= min_ratio and d >= min_abs:
        verdict = "regression"
    elif p_better <= alpha and r <= 1.0 / min_ratio and -d >= min_abs:
        verdict = "improvement"
    return Comparison(len(a), len(b), ma, mb, r, d, p_worse, p_better, verdict)
