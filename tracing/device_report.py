"""Text for the device section (tracing/device.py): the clip panel's GPU block, report.txt's
GPU section and `python -m tracing analyze`'s output share these (pure, no I/O)."""
from __future__ import annotations

DEVICE_STAGE_HEADERS = ["stage", "wall ms", "GPU busy ms", "GPU idle ms", "host_wait ms", "kernel_wait ms",
                        "other ms", "no GPU work ms", "kernels", "short kernels"]
_CELLS = ("wall_s", "busy_s", "idle_s", "host_wait_s", "kernel_wait_s", "other_s", "no_gpu_work_s")


def _ms(v) -> str:
    v = float(v or 0.0) * 1e3
    return "0" if v == 0 else f"{v:.0f}" if abs(v) >= 100 else f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}"


def device_stage_rows(dv: dict) -> list[list]:
    """Rows of DEVICE_STAGE_HEADERS, one per stage, then the whole request."""
    if not dv or dv.get("status") != "captured":
        return []
    rows = [[str(s.get("name", "?")), *(_ms(s.get(k)) for k in _CELLS), int(s.get("kernels") or 0),
             int(s.get("short_kernels") or 0)] for s in dv.get("stages") or []]
    t = dict(dv.get("totals") or {}, wall_s=dv.get("window_s"))
    rows.append(["(request)", *(_ms(t.get(k)) for k in _CELLS), int(t.get("kernels") or 0),
                 int(t.get("short_kernels") or 0)])
    return rows


def clock_text(dv: dict) -> str:
    c = (dv or {}).get("clock") or {}
    if not c:
        return ""
    s = f"clock aligned by {c.get('markers')} trace markers, error <= {c.get('error_us')} us"
    if c.get("probe_residual_us") is not None:
        s += f" (probe call {c['probe_residual_us']} us after its marker)"
    return s


def device_brief(dv: dict) -> str:
    """One line: the headline, or why there is no device view."""
    if not dv:
        return "GPU view: none for this clip (recorded before the device view existed)."
    if dv.get("status") != "captured":
        return f"GPU view: none: {dv.get('why', 'unknown reason')}."
    p = dv.get("profile") or {}
    dropped = p.get("dropped_before_launch")
    extra = f"; {dropped} stale kernel records dropped (pytorch#192021)" if dropped else ""
    return f"GPU view: {dv.get('headline', '')} ({clock_text(dv)}{extra})"


def device_markdown(dv: dict, esc=str) -> str:
    """The clip panel's GPU block: the brief line, then the per-stage table (Markdown). `esc` makes
    text that is not ours inert (tracing.mdsafe.md_text: blocker names come from the kernel)."""
    out = ["**GPU view:** " + esc(device_brief(dv).split(":", 1)[1].strip())]
    rows = device_stage_rows(dv)
    if rows:
        out += ["", "| " + " | ".join(DEVICE_STAGE_HEADERS) + " |", "|" + "---|" * len(DEVICE_STAGE_HEADERS)]
        out += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def device_lines(dv: dict, table) -> list[str]:
    """report.txt's GPU section; `table(headers, rows)` is the report's own table formatter."""
    out = ["GPU (device view)", "  " + device_brief(dv)]
    rows = device_stage_rows(dv)
    if not rows:
        return out
    out += table(DEVICE_STAGE_HEADERS, rows)
    t = dv.get("totals") or {}
    ld = t.get("launch_delay") or {}
    if ld.get("count"):
        out.append(f"  launch delay (start minus launch call end): p50 {ld['p50_us']} us, p95 {ld['p95_us']} us, "
                   f"max {ld['max_us']} us, {ld['outliers']} over 100 us")
    hc = t.get("host_cause") or {}
    if t.get("host_wait_s"):
        parts = ", ".join(f"{k[:-2]} {_ms(hc.get(k))} ms" for k in ("running_s", "runnable_s", "blocked_io_s",
                                                                    "sleep_s", "irq_s", "softirq_s", "unobserved_s"))
        out.append(f"  during host_wait the launching thread was: {parts}")
        for b in (hc.get("blockers") or [])[:5]:
            out.append(f"    runnable behind {b['blocker']}: {_ms(b['time_s'])} ms (CPU {b.get('cpus')})")
    for r in ((dv.get("gpu_waits") or {}).get("threads") or [])[:5]:
        out.append(f"  tid {r['tid']} waited for the GPU {_ms(r['wait_s'])} ms in {r['calls']} calls "
                   f"(spinning on-CPU {_ms(r['running_s'])} ms, asleep {_ms(r['sleep_s'])} ms)")
    return out
