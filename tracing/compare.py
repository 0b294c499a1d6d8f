"""Side-by-side comparison of two breakdowns (pure): the question "did pinning help?".

Each row is (metric, A, B, B/A). Times are shown in ms; the ratio is B divided by A, so a value
below 1 means preset B spent less time there. A ratio is "-" when A is zero.
"""
from __future__ import annotations

COMPARED = (  # (label, key in totals, is a time in seconds)
    ("wall", "wall_s", True),
    ("on-CPU", "on_cpu_s", True),
    ("run-queue wait", "runqueue_wait_s", True),
    ("blocked I/O", "blocked_io_s", True),
    ("sleep", "sleep_s", True),
    ("IRQ", "irq_s", True),
    ("softirq", "softirq_s", True),
    ("direct reclaim", "reclaim_s", True),
    ("migrations", "migrations", False),
    ("involuntary switches", "involuntary_switches", False),
)


def _fmt(v, is_time: bool) -> str:
    if v is None:
        return "n/a"
    return f"{v * 1000:.1f} ms" if is_time else str(int(v))


def compare_rows(a: dict | None, b: dict | None, name_a: str = "A", name_b: str = "B") -> list[list[str]]:
    """Rows comparing the totals of two Breakdown dicts, plus their top blocker and wakeup max."""
    ta = (a or {}).get("totals") or {}
    tb = (b or {}).get("totals") or {}
    rows = [["preset", name_a, name_b, ""]]
    for label, key, is_time in COMPARED:
        va, vb = ta.get(key), tb.get(key)
        ratio = f"{vb / va:.2f}" if isinstance(va, (int, float)) and isinstance(vb, (int, float)) and va else "-"
        rows.append([label, _fmt(va, is_time), _fmt(vb, is_time), ratio])
    wa = ((a or {}).get("wakeup_latency") or {}).get("max_us")
    wb = ((b or {}).get("wakeup_latency") or {}).get("max_us")
    rows.append(["max wakeup latency", "n/a" if wa is None else f"{wa:.0f} us",
                 "n/a" if wb is None else f"{wb:.0f} us",
                 f"{wb / wa:.2f}" if wa and wb is not None else "-"])
    rows.append(["top blocker", _top(a), _top(b), ""])
    return rows


def _top(bd: dict | None) -> str:
    bl = (bd or {}).get("blockers") or []
    if not bl:
        return "none"
    t = bl[0]
    return f"{t['comm']}:{t['pid']} {t['time_s'] * 1000:.1f} ms"
