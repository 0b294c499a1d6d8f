"""Human-readable text for one request's breakdown, and the row helpers the UI tables use.

The one place that formats breakdown numbers: times are shown in ms (`fmt_ms`: 0 decimals from
100 ms, 1 from 10 ms, 2 below), shares in % of our threads' summed observed time (several threads
wait at once, so that is the denominator the per-thread states add up to). Pure: no I/O.

- `format_breakdown_rows(bd)` -> rows of BREAKDOWN_HEADERS
- `stage_rows(bd)` -> rows of STAGE_HEADERS
- `thread_rows(bd, limit)` -> rows of THREAD_HEADERS
- `blocker_rows(bd, limit)` -> rows of BLOCKER_HEADERS
- `render_report(bd, findings, meta)` -> str; meta: request_id, time or created (epoch s or ISO
  str), engine, preset (read back: a dict or a name), wall_s and duration_s (for the RTF line), mode
  override, and any extra "key: value" lines under meta["extra"].
"""
from __future__ import annotations

import datetime as _dt
import math

from .device_report import device_lines

# Column headers of the rows below; the UI tables use these (same shapes as webui.py's tables).
BREAKDOWN_HEADERS = ["metric", "value"]
STAGE_HEADERS = ["stage", "wall ms", "on-CPU ms", "run-queue ms", "blocked I/O ms", "sleep ms", "IRQ ms",
                 "migrations"]
BLOCKER_HEADERS = ["task", "pid", "held our CPU ms", "preemptions"]
THREAD_HEADERS = ["thread", "tid", "observed ms", "on-CPU ms", "run-queue ms", "blocked I/O ms", "sleep ms",
                  "IRQ ms", "migrations", "vol/invol switches", "GPU wait ms"]

_SEVERITY_TAG = {"crit": "CRIT", "warn": "WARN", "info": "info"}


def _num(d, key: str) -> float:
    v = d.get(key) if isinstance(d, dict) else None
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else 0.0


def fmt_ms(seconds: float | None) -> str:
    """Seconds -> 'N ms' digits (no unit): 1234.5 -> '1235', 12.34 -> '12.3', 0.123 -> '0.12'."""
    if seconds is None:
        return "-"
    ms = float(seconds) * 1000.0
    if ms == 0:
        return "0"
    if abs(ms) >= 100:
        return f"{ms:.0f}"
    if abs(ms) >= 10:
        return f"{ms:.1f}"
    return f"{ms:.2f}"


def fmt_pct(part: float, whole: float) -> str:
    if whole <= 0:
        return ""
    p = 100.0 * part / whole
    return f"{p:.1f}%" if p < 10 else f"{p:.0f}%"


def _observed(bd: dict) -> float:
    obs = sum(_num(t, "observed_s") for t in bd.get("threads") or [])
    return obs if obs > 0 else _num(bd.get("totals", {}), "wall_s")


def format_breakdown_rows(bd: dict) -> list[list]:
    """[[metric, value]] for the totals; times as 'N ms (share of summed observed thread time)'."""
    tot = bd.get("totals") or {}
    obs = _observed(bd)
    full = bd.get("mode") != "schedstat"
    na = "n/a (schedstat mode)"

    def t(key):
        v = _num(tot, key)
        share = fmt_pct(v, obs)
        return f"{fmt_ms(v)} ms" + (f" ({share})" if share else "")
    rows: list[list] = [["wall time", f"{fmt_ms(_num(tot, 'wall_s'))} ms"]]
    if obs > 0:
        rows.append(["thread time observed", f"{fmt_ms(obs)} ms over {int(_num(tot, 'threads'))} threads"])
    for label, key in (("on-CPU", "on_cpu_s"), ("run-queue wait", "runqueue_wait_s"),
                       ("blocked I/O (D)", "blocked_io_s"), ("sleep (S)", "sleep_s"),
                       ("IRQ", "irq_s"), ("softirq", "softirq_s"), ("direct reclaim", "reclaim_s")):
        full_only = key not in ("on_cpu_s", "runqueue_wait_s")
        rows.append([label, na if full_only and not full else t(key)])
        if key == "runqueue_wait_s" and full:
            rows.append(["  of which CPU idle (slow wakeup)", t("idle_wait_s")])
    wall = _num(tot, "wall_s")
    mig = _num(tot, "migrations")
    rows.append(["migrations", (f"{int(mig)}" + (f" ({mig / wall:.0f}/s)" if wall > 0 else "")) if full else na])
    rows.append(["context switches (vol/invol)",
                 f"{int(_num(tot, 'voluntary_switches'))}/{int(_num(tot, 'involuntary_switches'))}"])
    if full:
        n, unc = int(_num(tot, "inferred_switches")), _num(tot, "uncertain_s")
        rows.append(["inferred switches", f"{n}" + (f" ({fmt_ms(unc)} ms in uncertain gaps)" if n or unc else "")])
    dv = bd.get("device") or {}
    if dv.get("status") == "captured":  # named, not hidden in sleep / on-CPU (tracing/device.py)
        waits = (dv.get("gpu_waits") or {}).get("threads") or []
        w, spin = sum(_num(r, "wait_s") for r in waits), sum(_num(r, "spinning_s") for r in waits)
        rows.append(["waiting for the GPU (synchronize)", f"{fmt_ms(w)} ms" + (f", {fmt_ms(spin)} ms of it spinning "
                                                                             f"on-CPU" if spin > 0 else "")])
    rows.append(["lost events", lost_text(bd) if full else na])
    miss = missing_events_text(bd)
    if miss and full:
        rows.append(["events not recorded", miss])
    return rows


def lost_text(bd: dict) -> str:
    """Lost events as the UI and report say it: a count, or unknown where a CPU's counter was unreadable."""
    lost = bd.get("lost_events") or {}
    total = int(_num(lost, "total"))
    unknown = [str(c) for c in lost.get("unknown_cpus") or []]
    if unknown:
        return (f"unknown on CPU {', '.join(unknown)} (counter unreadable)"
                + (f", {total} on the others" if total else "") + " (breakdown may be incomplete)")
    return f"{total}" + (" (breakdown incomplete)" if total > 0 else "")


def missing_events_text(bd: dict) -> str:
    """Events the window could not record, with why: '' when all were recorded."""
    miss = bd.get("missing_events") or {}
    return "; ".join(f"{ev} ({why})" for ev, why in sorted(miss.items())) if isinstance(miss, dict) else ""


def stage_rows(bd: dict, reclaim: bool = False) -> list[list]:
    """Rows of STAGE_HEADERS (IRQ = hard + soft); reclaim=True appends a direct-reclaim ms column."""
    rows = []
    for s in bd.get("stages") or []:
        r = [str(s.get("name", "?")), _cell(s, "wall_s"), _cell(s, "on_cpu_s"), _cell(s, "runqueue_wait_s"),
             _cell(s, "blocked_io_s"), _cell(s, "sleep_s"), _cell(s, "irq_s", "softirq_s"), _count(s, "migrations")]
        if reclaim:
            r.append(_cell(s, "reclaim_s"))
        rows.append(r)
    return rows


def _cell(d: dict, *keys) -> str:
    """ms text of d[key] (summed over keys), 'n/a' when the analysis could not measure it (None)."""
    if isinstance(d, dict) and any(k in d and d[k] is None for k in keys):
        return "n/a"
    return fmt_ms(sum(_num(d, k) for k in keys))


def _count(d: dict, key: str):
    return "n/a" if isinstance(d, dict) and key in d and d[key] is None else int(_num(d, key))


def thread_rows(bd: dict, limit: int = 20) -> list[list]:
    """Busiest threads first (on-CPU + run-queue wait); the rest folded into one row."""
    threads = sorted(bd.get("threads") or [], key=lambda t: -(_num(t, "on_cpu_s") + _num(t, "runqueue_wait_s")))
    rows = []
    for t in threads[:limit]:
        rows.append([str(t.get("comm", "?")), t.get("tid"), _cell(t, "observed_s"), _cell(t, "on_cpu_s"),
                     _cell(t, "runqueue_wait_s"), _cell(t, "blocked_io_s"), _cell(t, "sleep_s"),
                     _cell(t, "irq_s", "softirq_s"), _count(t, "migrations"),
                     f"{int(_num(t, 'voluntary_switches'))}/{int(_num(t, 'involuntary_switches'))}",
                     _gpu_wait(t)])
    rest = threads[limit:]
    if rest:
        def s(key):
            return sum(_num(t, key) for t in rest)
        rows.append([f"({len(rest)} more threads)", "", fmt_ms(s("observed_s")), fmt_ms(s("on_cpu_s")),
                     fmt_ms(s("runqueue_wait_s")), fmt_ms(s("blocked_io_s")), fmt_ms(s("sleep_s")),
                     fmt_ms(s("irq_s") + s("softirq_s")), int(s("migrations")),
                     f"{int(s('voluntary_switches'))}/{int(s('involuntary_switches'))}",
                     fmt_ms(s("gpu_wait_s")) if any(t.get("gpu_wait_s") is not None for t in rest) else "-"])
    return rows


def _gpu_wait(t: dict) -> str:
    """A thread's time in synchronizing CUDA calls ("waiting for the GPU", tracing/device.py), with
    its on-CPU (spinning) part; '-' without a device view."""
    if t.get("gpu_wait_s") is None:
        return "-"
    spin = _num(t, "gpu_wait_spinning_s")
    return fmt_ms(_num(t, "gpu_wait_s")) + (f" ({fmt_ms(spin)} spinning)" if spin > 0 else "")


def blocker_rows(bd: dict, limit: int = 10, share: bool = False) -> list[list]:
    """Rows of BLOCKER_HEADERS, longest first; share=True appends '% of wall'."""
    wall = _num(bd.get("totals", {}), "wall_s")
    bl = sorted(bd.get("blockers") or [], key=lambda b: -_num(b, "time_s"))
    rows = []
    for b in bl[:limit]:
        r = [str(b.get("comm", "?")), b.get("pid"), fmt_ms(_num(b, "time_s")), int(_num(b, "preemptions"))]
        if share:
            r.append(fmt_pct(_num(b, "time_s"), wall))
        rows.append(r)
    return rows


FIRST_SOUND_HEADERS = ["slice", "wall ms", "on-CPU ms", "run-queue ms", "blocked I/O ms", "sleep ms", "IRQ ms",
                       "reclaim ms", "idle-CPU wait ms", "top blockers"]


def first_sound_rows(bd: dict) -> list[list]:
    """The breakdown's first_sound split as two rows, before and after the first segment
    ([] when the request handed over no segment, or in schedstat mode)."""
    fs = bd.get("first_sound") or {}
    rows = []
    for name, label in (("before", "before first sound"), ("after", "after first sound")):
        ph = fs.get(name)
        if not ph:
            continue
        top = ", ".join(f"{b.get('comm', '?')}:{b.get('pid')} {fmt_ms(_num(b, 'time_s'))}"
                        for b in (ph.get("blockers") or [])[:3])
        rows.append([label] + [fmt_ms(_num(ph, k)) for k in ("wall_s", "on_cpu_s", "runqueue_wait_s", "blocked_io_s",
                                                              "sleep_s", "irq_s", "reclaim_s", "idle_wait_s")]
                    + [top or "-"])
    return rows


def _table(headers: list[str], rows: list[list], indent: str = "  ") -> list[str]:
    cells = [[str(c) for c in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(r):
        # first column left-aligned (names), numbers right-aligned
        return indent + "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
    out = [line(cells[0]), indent + "  ".join("-" * w for w in widths)]
    out += [line(r) for r in cells[1:]]
    return out


def histogram_lines(hist: dict, width: int = 40) -> list[str]:
    """log2 wakeup-latency buckets as text bars: '  16-31 us | ##########  12'."""
    items = []
    for k, v in (hist or {}).items():
        try:
            items.append((int(float(k)), int(v)))
        except (TypeError, ValueError):
            continue
    items.sort()
    if not items:
        return ["  (no wakeups observed)"]
    peak = max(v for _, v in items) or 1
    lo_hi = [(lo, (lo * 2 - 1) if lo > 0 else 0) for lo, _ in items]
    labels = [f"{_us(lo)}-{_us(hi)}" if hi > lo else _us(lo) for lo, hi in lo_hi]
    lw = max(len(x) for x in labels)
    out = []
    for label, (_, v) in zip(labels, items):
        bar = "#" * max(1 if v else 0, round(width * v / peak))
        out.append(f"  {label.rjust(lw)} | {bar.ljust(width)} {v}")
    return out


def _us(us: int) -> str:
    return f"{us}us"


def _when(t) -> str:
    if isinstance(t, (int, float)) and not isinstance(t, bool):
        return _dt.datetime.fromtimestamp(t, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return str(t) if t else "-"


def _preset_text(p) -> str:
    if not p:
        return "-"
    if isinstance(p, str):
        return p
    if isinstance(p, dict):
        keys = ("name", "preset", "cpus", "nice", "policy", "rt_priority", "torch_threads")
        parts = [f"{k}={p[k]}" for k in keys if k in p and p[k] is not None]
        extra = [f"{k}={v}" for k, v in p.items() if k not in keys and not isinstance(v, (dict, list))]
        return ", ".join(parts + extra) or "-"
    return str(p)


def latency_brief(latency: dict) -> str:
    """One line for the clip panel: each latency-tracer family's maximum, or why there is none."""
    parts = []
    for fam, res in (latency or {}).items():
        if isinstance(res, dict) and "max_latency_us" in res:
            parts.append(f"{fam}: {res.get('tracer')} max {int(res['max_latency_us'])} us")
        else:
            parts.append(f"{fam}: {res.get('error', 'no result') if isinstance(res, dict) else res}")
    return "; ".join(parts)


def latency_lines(latency: dict) -> list[str]:
    """Kernel latency tracers of the window (tracing.latency): a measurement or why there is none."""
    if not latency:
        return []
    out = ["", "Kernel latency tracers (system-wide maxima during the request)"]
    for fam, res in latency.items():
        if isinstance(res, dict) and "max_latency_us" in res:
            who = f", task {res['task']}:{res['pid']}" if res.get("task") else ""
            cpu = f", CPU {res['cpu']}" if res.get("cpu") is not None else ""
            span = f", {res['started_at']} -> {res['ended_at']}" if res.get("started_at") else ""
            out.append(f"  {fam}: {res.get('tracer')} max {int(res['max_latency_us'])} us{cpu}{who}{span}")
        elif isinstance(res, dict):
            out.append(f"  {fam}: {res.get('tracer')}: {res.get('error', 'no result')}")
        else:
            out.append(f"  {fam}: {res}")
    return out


def overlap_text(bd: dict) -> str:
    """What of our own post-processing ran inside this window (breakdown["overlap"], which the
    service adds: other requests' steps and the trace-aux threads' on-CPU time), or "" when none."""
    ov = (bd or {}).get("overlap") or {}
    steps = [s for s in ov.get("steps") or [] if isinstance(s, dict)]
    if not steps:
        return ""
    reqs = {str(s.get("request")) for s in steps} - {"-"}
    kinds = ", ".join(sorted({str(s.get("step")) for s in steps}))
    return (f"our own post-processing ({kinds}" + (f" of {len(reqs)} earlier request(s)" if reqs else "") +
            f") ran during {fmt_ms(_num(ov, 'wall_s'))} ms of this window; its trace-aux threads were on-CPU "
            f"{fmt_ms(_num(ov, 'on_cpu_s'))} ms (the trace-aux rows: ours, not the machine's)")


def render_report(breakdown: dict, findings: list, meta: dict | None = None) -> str:
    bd = breakdown or {}
    meta = meta or {}
    mode = meta.get("mode") or bd.get("mode", "?")
    win = bd.get("window") or {}
    L: list[str] = []
    L.append(f"Request {meta.get('request_id', '-')}  —  kernel latency report")
    L.append("=" * len(L[0]))
    L.append(f"  Time:    {_when(meta.get('time') or meta.get('created'))}")
    L.append(f"  Engine:  {meta.get('engine', '-')}")
    L.append(f"  Preset:  {_preset_text(meta.get('preset'))}  (read back from the kernel)")
    src = {"pages": ", decoded from the ring-buffer pages", "text": ", parsed from the text trace"}.get(
        bd.get("source", ""), "")
    mode_txt = f"full (ftrace{src})" if mode == "full" else "schedstat (DEGRADED: /proc counters only)" \
        if mode == "schedstat" else str(mode)
    L.append(f"  Mode:    {mode_txt}")
    L.append(f"  Process: pid {bd.get('pid', '-')}, window {fmt_ms(_num(win, 'duration_s'))} ms, "
             f"{int(_num(bd, 'events'))} events")
    if _num(meta, "wall_s") > 0:
        audio = _num(meta, "duration_s")
        rtf = f", RTF {_num(meta, 'wall_s') / audio:.2f}" if audio > 0 else ""
        L.append(f"  Request: {fmt_ms(_num(meta, 'wall_s'))} ms wall for {audio:.2f} s of audio{rtf}")
    if overlap_text(bd):
        L.append(f"  Overlap: {overlap_text(bd)}")
    for k, v in (meta.get("extra") or {}).items():
        L.append(f"  {k}: {v}")
    L.append("")

    L.append("Findings")
    L.append("--------")
    if findings:
        for f in findings:
            L.append(f"  [{_SEVERITY_TAG.get(f.get('severity'), '?')}] {f.get('kind')}: {f.get('message')}")
    else:
        L.append("  (none)")
    L.append("")

    L.append("Breakdown (our threads summed; % of their observed time)")
    L.extend(_table(BREAKDOWN_HEADERS, format_breakdown_rows(bd)))
    L.append("")

    sr = stage_rows(bd, reclaim=True)
    L.append("Stages")
    L.extend(_table(STAGE_HEADERS + ["reclaim ms"], sr) if sr else ["  (no stage markers)"])
    L.append("")

    if bd.get("device"):
        L.extend(device_lines(bd["device"], _table))
        L.append("")
    fs_rows = first_sound_rows(bd)
    if fs_rows:
        L.append(f"Before and after the first sound (first segment out at "
                 f"{fmt_ms(_num(bd['first_sound']['before'], 'wall_s'))} ms into the window)")
        L.extend(_table(FIRST_SOUND_HEADERS, fs_rows))
        L.append("")

    tr = thread_rows(bd)
    L.append("Threads")
    L.extend(_table(THREAD_HEADERS, tr) if tr else ["  (no threads)"])
    L.append("")

    br = blocker_rows(bd, share=True)
    L.append("Top blockers (other tasks running on our CPU while we were runnable)")
    if br and any(_num(b, "uncertain_s") > 0 for b in bd.get("blockers") or []):
        # time next to inferred switches: each held our CPU at least its time, at most that much more
        unc = {(str(b.get("comm", "?")), b.get("pid")): _num(b, "uncertain_s") for b in bd.get("blockers") or []}
        br = [r + [fmt_ms(unc.get((r[0], r[1]), 0.0))] for r in br]
        L.extend(_table(BLOCKER_HEADERS + ["% of wall", "+ up to ms (uncertain)"], br))
    elif br:
        L.extend(_table(BLOCKER_HEADERS + ["% of wall"], br))
    else:
        L.append("  (not available in schedstat mode)" if mode == "schedstat" else "  (none)")
    L.append("")

    wl = bd.get("wakeup_latency") or {}
    if mode == "schedstat":
        L.append("Wakeup latency: not available in schedstat mode")
        return "\n".join(L) + "\n"
    L.append(f"Wakeup latency (waking -> running): {int(_num(wl, 'count'))} wakeups, "
             f"p50 {_num(wl, 'p50_us'):.0f} us, p95 {_num(wl, 'p95_us'):.0f} us, max {_num(wl, 'max_us'):.0f} us")
    L.extend(histogram_lines(wl.get("hist_log2_us") or {}))
    L.extend(latency_lines(bd.get("latency") or {}))
    lost = bd.get("lost_events") or {}
    if lost.get("unknown_cpus"):
        L.append("")
        L.append(f"WARNING: lost events {lost_text(bd)}; figures may be lower bounds.")
    elif _num(lost, "total") > 0:
        L.append("")
        L.append(f"WARNING: {int(_num(lost, 'total'))} events were lost; every figure above is a lower bound.")
    if missing_events_text(bd):
        L.append("")
        L.append(f"WARNING: events not recorded: {missing_events_text(bd)}.")
    return "\n".join(L) + "\n"
