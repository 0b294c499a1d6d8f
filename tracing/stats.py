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
   1/252) for anything finer; after the Holm step below N = 3 can flag nothing. The CLI default is
   N = 20 (docs/snapshots.md, "What N detects").
2. Effect size, so that a significant but tiny shift (typical of a quiet box: 3 ms more run-queue
   wait in every sample) is not flagged: the ratio of medians new/old must be >= min_ratio
   (default 1.2, i.e. 20 % worse) AND the medians must differ by >= min_abs seconds (default
   5 ms: below that, scheduler noise on a shared machine dominates).

Verdicts: "regression" (1 and 2 hold with NEW larger), "improvement" (the mirror image: one-sided
test the other way, ratio <= 1/min_ratio, same absolute gate), "same" otherwise, and "n/a" when
either side has fewer than 2 samples (no test possible).
Many metrics are tested at once: tracing/diff.py adjusts each preset's p-values with Holm's
step-down method (`holm`), one family for the median tests and one for the tail tests, so that a
preset with nothing changed raises a false alarm with probability <= alpha per family, not ~9x
that. Measured on real quiet snapshots of this shared box (N = 20, resampled): 11 % of draws
had some median "regression" without it (mostly `sleep`), see benchmarks/snapshot_power.py.
The effect-size gates come on top.

The tail test (`tail_compare`), because users feel the slow requests, not the median: a CPU hog
that leaves the median 1.19x but triples p95 is a regression to anyone who clicks.

1. Threshold: OLD's r-th largest value, r = max(1, round((m + 1) * (1 - q/100))) for m OLD samples
   and q = 95, i.e. OLD's p95 as well as m samples can say (m = 20: the largest, an estimate of
   the 1 - 1/21 = 95.2 % quantile; m = 5: also the largest, only a p83).
2. Significance: J = how many of the n NEW samples lie above it. If OLD and NEW come from one
   distribution, all orderings of the m + n values are equally likely and, exactly,
       P(J = k) = C(k + r - 1, k) * C(m - r + n - k, n - k) / C(m + n, n)
   (the exceedance / precedence statistic: r - 1 OLD and k NEW values above the threshold, the
   rest below). p = P(J >= J observed); significant when p <= alpha. Not a binomial test of J
   against 5 %: that treats OLD's p95 as known, but from 20 samples it is itself random, and
   the binomial understates p (4 of 20 above OLD's max: binomial 0.016, exact 0.053), so its
   false alarms exceed what it reports (tests/test_stats.py measures both).
3. Effect size, as for the median: NEW's p95 must be >= tail_min_ratio x OLD's p95 (default
   1.5) AND >= tail_min_abs seconds above it (default 20 ms: a p95 is noisier than a median).
Verdict "regression" when 1-3 hold, "same" otherwise, "n/a" with fewer than 2 samples a side.
The smallest p with r = 1 is 1 / C(m + n, n): N = 5 a side can reach 0.004, but a p83 threshold
and a 5-sample p95 say little about a tail; docs/snapshots.md's power table says what N detects what.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

ALPHA = 0.05
MIN_RATIO = 1.2
MIN_ABS_S = 0.005
TAIL_Q = 95.0
TAIL_MIN_RATIO = 1.5
TAIL_MIN_ABS_S = 0.020


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


def holm(pvalues) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order (NaN stays NaN and does not count):
    the i-th smallest of k is multiplied by k - i, then made non-decreasing, capped at 1."""
    idx = sorted((i for i, p in enumerate(pvalues) if p == p), key=lambda i: pvalues[i])
    out = [math.nan] * len(pvalues)
    k, running = len(idx), 0.0
    for rank, i in enumerate(idx):
        running = max(running, min(1.0, (k - rank) * pvalues[i]))
        out[i] = running
    return out


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


@dataclass
class TailComparison:
    n_old: int
    n_new: int
    rank: int             # threshold = OLD's rank-th largest value
    threshold: float      # that value
    threshold_q: float    # the quantile it estimates, 100 * (1 - rank / (n_old + 1))
    exceed: int           # NEW samples above the threshold
    expected: float       # exceed expected when nothing changed: n_new * rank / (n_old + 1)
    p95_old: float
    p95_new: float
    ratio: float          # p95_new / p95_old
    p_value: float        # P(J >= exceed) under "same distribution" (exact)
    verdict: str          # regression | same | n/a

    def to_dict(self) -> dict:
        return asdict(self)


def tail_rank(m: int, q: float = TAIL_Q) -> int:
    return max(1, int(round((m + 1) * (1.0 - q / 100.0))))


def exceedance_pvalue(m: int, n: int, r: int, j: int) -> float:
    """P(J >= j): J = NEW samples (of n) above OLD's r-th largest (of m), both from one continuous
    distribution (exact; see the module docstring)."""
    if j <= 0:
        return 1.0
    total = math.comb(m + n, n)
    tail = sum(math.comb(k + r - 1, k) * math.comb(m - r + n - k, n - k) for k in range(j, n + 1))
    return tail / total


def tail_compare(old, new, q: float = TAIL_Q, alpha: float = ALPHA, min_ratio: float = TAIL_MIN_RATIO,
                 min_abs: float = TAIL_MIN_ABS_S) -> TailComparison:
    """Is NEW's tail above OLD's (the test above)? Same units rule as compare()."""
    a = sorted(float(x) for x in old if x is not None and math.isfinite(x))
    b = [float(x) for x in new if x is not None and math.isfinite(x)]
    pa, pb = percentile(a, 95), percentile(b, 95)
    if len(a) < 2 or len(b) < 2:
        return TailComparison(len(a), len(b), 0, math.nan, math.nan, 0, math.nan, pa, pb, math.nan, math.nan, "n/a")
    m, n = len(a), len(b)
    r = min(tail_rank(m, q), m)
    thr = a[m - r]
    j = sum(1 for x in b if x > thr)
    p = exceedance_pvalue(m, n, r, j)
    ratio = ratio_of(pb, pa)
    verdict = "regression" if (p <= alpha and ratio >= min_ratio and pb - pa >= min_abs) else "same"
    return TailComparison(m, n, r, thr, 100.0 * (1.0 - r / (m + 1)), j, n * r / (m + 1), pa, pb, ratio, p, verdict)
