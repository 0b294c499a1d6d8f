"""How two breakdowns differ, exactly: what the identity tests and benchmarks/analysis_speed.py
compare the analysis with its oracle (and with another checkout) by."""
from __future__ import annotations


def first_difference(a, b, path: str = "breakdown") -> str | None:
    """Where two JSON-like values differ (exactly: floats bit for bit), else None."""
    if type(a) is not type(b):
        return f"{path}: {type(a).__name__} vs {type(b).__name__}"
    if isinstance(a, dict):
        if list(a) != list(b):
            return f"{path}: keys {list(a)} vs {list(b)}"
        return next((d for k in a if (d := first_difference(a[k], b[k], f"{path}.{k}"))), None)
    if isinstance(a, list):
        if len(a) != len(b):
            return f"{path}: {len(a)} vs {len(b)} items"
        return next((d for i, (x, y) in enumerate(zip(a, b)) if (d := first_difference(x, y, f"{path}[{i}]"))), None)
    return None if a == b or (a != a and b != b) else f"{path}: {a!r} vs {b!r}"
