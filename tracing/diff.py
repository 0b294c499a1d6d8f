"""Snapshot metrics and the diff of two snapshots (pure: loaded snapshots in, rows out, no I/O).

A snapshot (tracing/snapshot.py) is anything with `.manifest` (dict) and `.samples`
({preset: [request summary dict]}); a request summary is the attachment's summary.json
(`wall_s`, `breakdown`, `findings`, `preset`, `engine`, ...).

Metrics, one value per request, all in seconds (METRICS is the single definition):
- wall            the service's wall time of the synthesis window (summary `wall_s`)
- on_cpu          breakdown totals.on_cpu_s: time our threads ran (summed over threads)
- runqueue_wait   totals.runqueue_wait_s: runnable but not running (woken or preempted -> switch-in)
- blocked_io      totals.blocked_io_s: off-CPU in state D
- sleep           totals.sleep_s: off-CPU in state S/I
- irq, softirq    totals.irq_s / softirq_s: handlers running while our thread was current
- reclaim         totals.reclaim_s: direct reclaim in our threads
- wakeup_p95      wakeup_latency.p95_us / 1e6: 95th percentile wakeup -> switch-in latency
Requests traced in schedstat mode or not traced lack some of these; missing values are skipped.

Blockers: other tasks that held the CPU our thread waited on. Per preset, the mean time per
request is taken by task name (comm, with per-CPU kernel thread numbers folded: `kworker/1:2H`
-> `kworker/*H`), and a blocker "appeared" when its mean is >= BLOCKER_MIN_S in NEW and
< BLOCKER_ABSENT_S in OLD ("vanished" is the mirror image). Blockers explain a regression; they
do not decide one: `has_regression` is true when any metric row's verdict is "regression"
(the test in tracing/stats.py).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from tracing import stats

# name -> (label, extractor(summary) -> float | None)
def _total(key):
    return lambda s: ((s.get("breakdown") or {}).get("totals") or {}).get(key)


def _wakeup_p95(s):
    v = ((s.get("breakdown") or {}).get("wakeup_latency") or {}).get("p95_us")
    return None if v is None else v / 1e6


METRICS = {
    "wall": ("wall", lambda s: s.get("wall_s")),
    "on_cpu": ("on-CPU", _total("on_cpu_s")),
    "runqueue_wait": ("run-queue wait", _total("runqueue_wait_s")),
    "blocked_io": ("blocked I/O", _total("blocked_io_s")),
    "sleep": ("sleep", _total("sleep_s")),
    "irq": ("IRQ", _total("irq_s")),
    "softirq": ("softirq", _total("softirq_s")),
    "reclaim": ("direct reclaim", _total("reclaim_s")),
    "wakeup_p95": ("wakeup latency p95", _wakeup_p95),
}

BLOCKER_MIN_S = 0.005
BLOCKER_ABSENT_S = 0.001


def metric_values(summaries: list[dict], metric: str) -> list[float]:
    fn = METRICS[metric][1]
    out = []
    for s in summaries:
        v = fn(s)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            out.append(float(v))
    return out


def blocker_key(comm: str) -> str:
    """Fold per-CPU/per-worker numbers of kernel threads so the same role matches across runs."""
    return re.sub(r"(?<=/)[\d:]+", "*", comm or "?")


def blocker_means(summaries: list[dict]) -> dict[str, float]:
    """Mean seconds per request that each blocker (by blocker_key) held our CPU."""
    if not summaries:
        return {}
    tot: dict[str, float] = {}
    for s in summaries:
        for b in (s.get("breakdown") or {}).get("blockers") or []:
            k = blocker_key(b.get("comm", "?"))
            tot[k] = tot.get(k, 0.0) + float(b.get("time_s") or 0.0)
    return {k: v / len(summaries) for k, v in sorted(tot.items(), key=lambda kv: -kv[1])}


@dataclass
class DiffResult:
    rows: list[dict]          # one per preset x metric
    blockers: list[dict]      # {preset, comm, old_s, new_s, change: appeared|vanished}
    only_old: list[str]       # presets present in OLD only
    only_new: list[str]
    context: list[dict]       # manifest fields that differ: {field, old, new}
    params: dict              # alpha, min_ratio, min_abs
    regressions: list[dict] = field(default_factory=list)

    @property
    def has_regression(self) -> bool:
        return bool(self.regressions)

    def to_dict(self) -> dict:
        return {"rows": self.rows, "blockers": self.blockers, "only_old": self.only_old,
                "only_new": self.only_new, "context": self.context, "params": self.params,
                "has_regression": self.has_regression,
                "regressions": [f"{r['preset']}: {r['label']}" for r in self.regressions]}


CONTEXT_FIELDS = ("host", "kernel", "engine", "versions", "cpus", "text")


def diff(old, new, alpha: float = stats.ALPHA, min_ratio: float = stats.MIN_RATIO,
         min_abs: float = stats.MIN_ABS_S, metrics=None) -> DiffResult:
    """Compare two loaded snapshots preset by preset (presets present in both)."""
    metrics = list(metrics or METRICS)
    presets = [p for p in old.samples if p in new.samples]
    rows, blockers = [], []
    for p in presets:
        so, sn = old.samples[p], new.samples[p]
        for m in metrics:
            vo, vn = metric_values(so, m), metric_values(sn, m)
            c = stats.compare(vo, vn, alpha=alpha, min_ratio=min_ratio, min_abs=min_abs)
            o, n = stats.summarize(vo), stats.summarize(vn)
            rows.append({"preset": p, "metric": m, "label": METRICS[m][0],
                         "old_p50": o["p50"], "old_p95": o["p95"], "new_p50": n["p50"], "new_p95": n["p95"],
                         "n_old": c.n_old, "n_new": c.n_new, "ratio": c.ratio,
                         "p_value": c.p_better if c.verdict == "improvement" else c.p_worse,
                         "verdict": c.verdict})
        bo, bn = blocker_means(so), blocker_means(sn)
        for comm in sorted(set(bo) | set(bn)):
            a, b = bo.get(comm, 0.0), bn.get(comm, 0.0)
            if b >= BLOCKER_MIN_S and a < BLOCKER_ABSENT_S:
                blockers.append({"preset": p, "comm": comm, "old_s": a, "new_s": b, "change": "appeared"})
            elif a >= BLOCKER_MIN_S and b < BLOCKER_ABSENT_S:
                blockers.append({"preset": p, "comm": comm, "old_s": a, "new_s": b, "change": "vanished"})
    blockers.sort(key=lambda r: -max(r["old_s"], r["new_s"]))
    context = []
    for f in CONTEXT_FIELDS:
        a, b = old.manifest.get(f), new.manifest.get(f)
        if a != b:
            context.append({"field": f, "old": a, "new": b})
    return DiffResult(rows=rows, blockers=blockers,
                      only_old=[p for p in old.samples if p not in new.samples],
                      only_new=[p for p in new.samples if p not in old.samples],
                      context=context, params={"alpha": alpha, "min_ratio": min_ratio, "min_abs_s": min_abs},
                      regressions=[r for r in rows if r["verdict"] == "regression"])


# ----------------------------------------------------------------------------- rendering ----
def _ms(v) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v * 1000:.1f}"


def _ratio(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return "inf" if math.isinf(v) else f"{v:.2f}x"


def _p(v) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


DIFF_HEAD = ["preset", "metric", "old p50 ms", "new p50 ms", "old p95 ms", "new p95 ms", "ratio p50",
             "p-value", "verdict"]


def diff_table(result: DiffResult) -> list[list[str]]:
    """Rows for a UI table (header DIFF_HEAD); regressions marked in capitals."""
    return [[r["preset"], r["label"], _ms(r["old_p50"]), _ms(r["new_p50"]), _ms(r["old_p95"]), _ms(r["new_p95"]),
             _ratio(r["ratio"]), _p(r["p_value"]),
             r["verdict"].upper() if r["verdict"] == "regression" else r["verdict"]] for r in result.rows]


def format_diff(result: DiffResult) -> str:
    """The human-readable diff the CLI prints."""
    pr = result.params
    lines = [f"Test: one-sided Mann-Whitney U, alpha {pr['alpha']}, flagged only when the median is "
             f">= {pr['min_ratio']}x and >= {pr['min_abs_s'] * 1000:.0f} ms worse."]
    for c in result.context:
        lines.append(f"context changed: {c['field']}: {c['old']!r} -> {c['new']!r}")
    for p in result.only_old:
        lines.append(f"preset {p}: only in OLD (not compared)")
    for p in result.only_new:
        lines.append(f"preset {p}: only in NEW (not compared)")
    table = [DIFF_HEAD] + diff_table(result)
    widths = [max(len(str(r[i])) for r in table) for i in range(len(DIFF_HEAD))]
    for r in table:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
    for b in result.blockers:
        lines.append(f"blocker {b['change']} ({b['preset']}): {b['comm']} "
                     f"{b['old_s'] * 1000:.1f} -> {b['new_s'] * 1000:.1f} ms per request")
    if result.has_regression:
        lines.append("REGRESSION: " + "; ".join(f"{r['preset']}: {r['label']} p50 {_ms(r['old_p50'])} -> "
                                                f"{_ms(r['new_p50'])} ms ({_ratio(r['ratio'])}, p={_p(r['p_value'])})"
                                                for r in result.regressions))
    else:
        lines.append("No significant regression.")
    return "\n".join(lines) + "\n"
