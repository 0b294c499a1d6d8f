"""Snapshot metrics and the diff of two snapshots (pure: loaded snapshots in, rows out, no I/O).

A snapshot (tracing/snapshot.py) is anything with `.manifest` (dict) and `.samples`
({preset: [request summary dict]}); a request summary is the attachment's summary.json
(`wall_s`, `breakdown`, `findings`, `preset`, `engine`, ...).

Metrics, one value per request, all in seconds (METRICS is the single definition):
- wall            the service's wall time of the synthesis window (summary `wall_s`)
- first_sound     time to first sound on the server: synthesis start -> the first audio segment
                  handed over (summary `first_sound_s`; absent in snapshots made before it existed)
- on_cpu          breakdown totals.on_cpu_s: time our threads ran (summed over threads)
- runqueue_wait   totals.runqueue_wait_s: runnable but not running (woken or preempted -> switch-in)
- blocked_io      totals.blocked_io_s: off-CPU in state D
- sleep           totals.sleep_s: off-CPU in state S/I
- irq, softirq    totals.irq_s / softirq_s: handlers running while our thread was current
- reclaim         totals.reclaim_s: direct reclaim in our threads
- wakeup_p95      wakeup_latency.p95_us / 1e6: 95th percentile wakeup -> switch-in latency
- gpu_idle        device.totals.idle_s: the serving GPU idle in the window (device view, GPU only)
- gpu_host_wait   device.totals.host_wait_s: of that, waiting for the host (HTA's host_wait)
Requests traced in schedstat mode or not traced lack some of these; missing values are skipped.

Blockers: other tasks that held the CPU our thread waited on. Per preset, the mean time per
request is taken by task name (comm, with per-CPU kernel thread numbers folded: `kworker/1:2H`
-> `kworker/*H`), and a blocker "appeared" when its mean is >= BLOCKER_MIN_S in NEW and
< BLOCKER_ABSENT_S in OLD ("vanished" is the mirror image).

Three kinds of regression, each with its own verdict line; `has_regression` is true when any holds:
- median ("REGRESSION"): a metric row's `verdict` (stats.compare: Mann-Whitney U + effect gates);
- tail ("TAIL REGRESSION"): a row's `tail_verdict` (stats.tail_compare: NEW requests above OLD's
  p95, exact exceedance test + p95 effect gates), for the TAIL_METRICS only (the stall a user
  feels and its usual CPU cause; fewer tests, fewer false alarms);
- blocker ("BLOCKER REGRESSION"), only when `blocker_gate_s` is given: a blocker that appeared
  and costs >= blocker_gate_s per request in NEW. Without the gate, blockers explain a regression
  and do not decide one.
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


def _device(key):
    def get(s):
        dv = (s.get("breakdown") or {}).get("device") or {}
        return (dv.get("totals") or {}).get(key) if dv.get("status") == "captured" and dv.get("device") is not None \
            else None
    return get


METRICS = {
    "wall": ("wall", lambda s: s.get("wall_s")),
    "first_sound": ("time to first sound", lambda s: s.get("first_sound_s")),
    "on_cpu": ("on-CPU", _total("on_cpu_s")),
    "runqueue_wait": ("run-queue wait", _total("runqueue_wait_s")),
    "blocked_io": ("blocked I/O", _total("blocked_io_s")),
    "sleep": ("sleep", _total("sleep_s")),
    "irq": ("IRQ", _total("irq_s")),
    "softirq": ("softirq", _total("softirq_s")),
    "reclaim": ("direct reclaim", _total("reclaim_s")),
    "wakeup_p95": ("wakeup latency p95", _wakeup_p95),
    "gpu_idle": ("GPU idle", _device("idle_s")),
    "gpu_host_wait": ("GPU host_wait", _device("host_wait_s")),
}

DEVICE_METRICS = ("gpu_idle", "gpu_host_wait")  # rows only when a snapshot has a device view (a GPU)


def _any_values(old, new, metric: str) -> bool:
    return any(metric_values(ss, metric) for snap in (old, new) for ss in snap.samples.values())


BLOCKER_MIN_S = 0.005
BLOCKER_ABSENT_S = 0.001
TAIL_METRICS = ("wall", "first_sound", "runqueue_wait")  # first sound: gated like wall (issue 23)


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
    params: dict              # alpha, min_ratio, min_abs_s, tail_*, blocker_gate_s
    regressions: list[dict] = field(default_factory=list)          # rows with a median regression
    tail_regressions: list[dict] = field(default_factory=list)     # rows with a tail regression
    blocker_regressions: list[dict] = field(default_factory=list)  # appeared blockers over the gate

    @property
    def has_regression(self) -> bool:
        return bool(self.regressions or self.tail_regressions or self.blocker_regressions)

    def verdicts(self) -> list[str]:
        """One short name per regression: "<preset>: <label>" (median), "<preset>: <label> tail",
        "<preset>: blocker <comm>"."""
        return ([f"{r['preset']}: {r['label']}" for r in self.regressions]
                + [f"{r['preset']}: {r['label']} tail" for r in self.tail_regressions]
                + [f"{b['preset']}: blocker {b['comm']}" for b in self.blocker_regressions])

    def to_dict(self) -> dict:
        return {"rows": self.rows, "blockers": self.blockers, "only_old": self.only_old,
                "only_new": self.only_new, "context": self.context, "params": self.params,
                "has_regression": self.has_regression, "regressions": self.verdicts(),
                "median_regressions": len(self.regressions), "tail_regressions": len(self.tail_regressions),
                "blocker_regressions": len(self.blocker_regressions)}


CONTEXT_FIELDS = ("host", "kernel", "engine", "versions", "cpus", "text")


def diff(old, new, alpha: float = stats.ALPHA, min_ratio: float = stats.MIN_RATIO,
         min_abs: float = stats.MIN_ABS_S, metrics=None, tail_metrics=TAIL_METRICS,
         tail_min_ratio: float = stats.TAIL_MIN_RATIO, tail_min_abs: float = stats.TAIL_MIN_ABS_S,
         blocker_gate_s: float | None = None) -> DiffResult:
    """Compare two loaded snapshots preset by preset (presets present in both). tail_metrics=()
    turns the tail test off; blocker_gate_s=None leaves blockers out of the verdict."""
    metrics = list(metrics or [m for m in METRICS if m not in DEVICE_METRICS or _any_values(old, new, m)])
    tail_metrics = set(tail_metrics or ())
    unknown = (tail_metrics - set(METRICS)) or ({m for m in metrics if m not in METRICS})
    if unknown:
        raise ValueError(f"Unknown metric(s) {', '.join(sorted(unknown))}; known: {', '.join(METRICS)}.")
    presets = [p for p in old.samples if p in new.samples]
    rows, blockers = [], []
    for p in presets:
        so, sn = old.samples[p], new.samples[p]
        prow = []
        for m in metrics:
            vo, vn = metric_values(so, m), metric_values(sn, m)
            c = stats.compare(vo, vn, alpha=alpha, min_ratio=min_ratio, min_abs=min_abs)
            o, n = stats.summarize(vo), stats.summarize(vn)
            row = {"preset": p, "metric": m, "label": METRICS[m][0],
                   "old_p50": o["p50"], "old_p95": o["p95"], "new_p50": n["p50"], "new_p95": n["p95"],
                   "n_old": c.n_old, "n_new": c.n_new, "ratio": c.ratio,
                   "p_value": c.p_better if c.verdict == "improvement" else c.p_worse,
                   "p_worse": c.p_worse, "p_better": c.p_better,
                   "verdict": c.verdict, "tail_verdict": "", "tail": None}
            if m in tail_metrics:
                t = stats.tail_compare(vo, vn, alpha=alpha, min_ratio=tail_min_ratio, min_abs=tail_min_abs)
                row["tail"], row["tail_verdict"] = t.to_dict(), t.verdict
            prow.append(row)
        _holm_preset(prow, alpha)
        rows += prow
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
    gated = [] if blocker_gate_s is None else \
        [b for b in blockers if b["change"] == "appeared" and b["new_s"] >= blocker_gate_s]
    return DiffResult(rows=rows, blockers=blockers,
                      only_old=[p for p in old.samples if p not in new.samples],
                      only_new=[p for p in new.samples if p not in old.samples],
                      context=context,
                      params={"alpha": alpha, "min_ratio": min_ratio, "min_abs_s": min_abs,
                              "tail_metrics": [m for m in metrics if m in tail_metrics], "tail_q": stats.TAIL_Q,
                              "tail_min_ratio": tail_min_ratio, "tail_min_abs_s": tail_min_abs,
                              "blocker_gate_s": blocker_gate_s},
                      regressions=[r for r in rows if r["verdict"] == "regression"],
                      tail_regressions=[r for r in rows if r["tail_verdict"] == "regression"],
                      blocker_regressions=gated)


def _holm_preset(prow: list[dict], alpha: float) -> None:
    """One preset's rows: Holm-adjust the median p-values (worse and better separately) and the
    tail p-values over the metrics tested, and drop verdicts the adjusted p no longer supports
    (the raw-alpha verdicts are a superset: an adjusted p is never smaller)."""
    for key in ("p_worse", "p_better"):
        adj = stats.holm([r[key] for r in prow])
        for r, a in zip(prow, adj):
            r[key + "_adj"] = a
    for r in prow:
        if r["verdict"] == "regression" and not r["p_worse_adj"] <= alpha:
            r["verdict"] = "same"
        elif r["verdict"] == "improvement" and not r["p_better_adj"] <= alpha:
            r["verdict"] = "same"
        r["p_adj"] = r["p_better_adj"] if r["verdict"] == "improvement" else r["p_worse_adj"]
        r["p_value"] = r["p_better"] if r["verdict"] == "improvement" else r["p_worse"]
    tails = [r for r in prow if r["tail"]]
    for r, a in zip(tails, stats.holm([r["tail"]["p_value"] for r in tails])):
        r["tail"]["p_adj"] = a
        if r["tail_verdict"] == "regression" and not a <= alpha:
            r["tail_verdict"] = r["tail"]["verdict"] = "same"


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
             "p (Holm)", "verdict", "ratio p95", "new above old p95", "tail p (Holm)", "tail verdict"]


def _exceed(t) -> str:
    return "-" if not t or t["verdict"] == "n/a" else f"{t['exceed']}/{t['n_new']} (exp {t['expected']:.1f})"


def diff_table(result: DiffResult) -> list[list[str]]:
    """Rows for a UI table (header DIFF_HEAD); regressions marked in capitals. The tail columns
    are "-" for metrics the tail test does not gate."""
    out = []
    for r in result.rows:
        t = r.get("tail")
        tv = r.get("tail_verdict") or "-"
        out.append([r["preset"], r["label"], _ms(r["old_p50"]), _ms(r["new_p50"]), _ms(r["old_p95"]),
                    _ms(r["new_p95"]), _ratio(r["ratio"]), _p(r.get("p_adj", r["p_value"])),
                    r["verdict"].upper() if r["verdict"] == "regression" else r["verdict"],
                    _ratio(t["ratio"]) if t else "-", _exceed(t), _p(t.get("p_adj", t["p_value"])) if t else "-",
                    tv.upper() if tv == "regression" else tv])
    return out


def format_diff(result: DiffResult) -> str:
    """The human-readable diff the CLI prints."""
    pr = result.params
    lines = [f"Test: one-sided Mann-Whitney U, alpha {pr['alpha']} (p Holm-adjusted over each preset's metrics), "
             f"flagged only when the median is >= {pr['min_ratio']}x and >= {pr['min_abs_s'] * 1000:.0f} ms worse."]
    if pr.get("tail_metrics"):
        lines.append(f"Tail ({', '.join(METRICS[m][0] for m in pr['tail_metrics'])}): NEW requests above OLD's "
                     f"p{pr['tail_q']:.0f}, exact exceedance test, alpha {pr['alpha']}, flagged only when p95 is "
                     f">= {pr['tail_min_ratio']}x and >= {pr['tail_min_abs_s'] * 1000:.0f} ms worse.")
    if pr.get("blocker_gate_s") is not None:
        lines.append(f"Blocker gate: a task that appeared and holds our CPU >= "
                     f"{pr['blocker_gate_s'] * 1000:.1f} ms per request.")
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
    if result.regressions:
        lines.append("REGRESSION: " + "; ".join(f"{r['preset']}: {r['label']} p50 {_ms(r['old_p50'])} -> "
                                                f"{_ms(r['new_p50'])} ms ({_ratio(r['ratio'])}, p={_p(r['p_adj'])})"
                                                for r in result.regressions))
    if result.tail_regressions:
        lines.append("TAIL REGRESSION: " + "; ".join(
            f"{r['preset']}: {r['label']} {r['tail']['exceed']}/{r['tail']['n_new']} new requests above OLD's "
            f"p{r['tail']['threshold_q']:.0f} ({_ms(r['tail']['threshold'])} ms; {r['tail']['expected']:.1f} expected), "
            f"p={_p(r['tail']['p_adj'])}, p95 {_ms(r['old_p95'])} -> {_ms(r['new_p95'])} ms "
            f"({_ratio(r['tail']['ratio'])})" for r in result.tail_regressions))
    if result.blocker_regressions:
        lines.append("BLOCKER REGRESSION: " + "; ".join(
            f"{b['preset']}: {b['comm']} appeared, {b['new_s'] * 1000:.1f} ms per request "
            f"(gate {pr['blocker_gate_s'] * 1000:.1f} ms)" for b in result.blocker_regressions))
    if not result.has_regression:
        lines.append("No significant regression.")
    return "\n".join(lines) + "\n"
