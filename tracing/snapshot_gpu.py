"""GPU columns of a snapshot's summary: the table (tracing/snapshot.py) and the picture
(tracing/plots.py), from each request's device section (tracing/device.py), pure.

Per request, from the section's totals (the values /metrics exports as itts_gpu_idle_share and
itts_gpu_host_wait_share):
  gpu_idle_share       idle_share = idle_s / window_s: the share of the synthesis window the
                       serving GPU sat idle;
  gpu_host_wait_share  host_wait_share = host_wait_s / window_s: the share it sat idle waiting for
                       the host (HTA's host_wait: the next launch came after the GPU went idle).
A request counts only with a captured device view that saw GPU activity (status "captured",
`device` set): a CPU engine, --device-view off or cpu, a failed profile give no value, never 0.
Per preset p50 and p95 over its requests, in %. The columns (and panels) exist only when some
request of the snapshot has a value; a preset none of whose requests has one shows "-".
"""
from __future__ import annotations

import math

from . import stats

SHARES = {"gpu_idle_share": ("GPU idle", "idle_share"),
          "gpu_host_wait_share": ("GPU host_wait", "host_wait_share")}
HEAD = ["GPU idle p50 %", "GPU idle p95 %", "host_wait p50 %", "host_wait p95 %"]


def share_values(summaries: list[dict], metric: str) -> list[float]:
    """One share (0..1) per request of `summaries` that has one (see the module docstring)."""
    key = SHARES[metric][1]
    out = []
    for s in summaries:
        dv = ((s or {}).get("breakdown") or {}).get("device") or {}
        v = (dv.get("totals") or {}).get(key) if dv.get("status") == "captured" and dv.get("device") is not None \
            else None
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            out.append(float(v))
    return out


def has_device(samples: dict[str, list[dict]]) -> bool:
    """Whether any request of the snapshot ({preset: summaries}) has a GPU share."""
    return any(share_values(ss, "gpu_idle_share") for ss in samples.values())


def head(samples: dict[str, list[dict]]) -> list[str]:
    """The GPU column headers, [] when no request has a device view."""
    return list(HEAD) if has_device(samples) else []


def _pct(v: float) -> str:
    return "-" if math.isnan(v) else f"{v * 100:.1f}"


def cells(summaries: list[dict]) -> list[str]:
    """The cells under HEAD for one preset's requests ("-" where none has a device view)."""
    out = []
    for metric in SHARES:
        s = stats.summarize(share_values(summaries, metric))
        out += [_pct(s["p50"]), _pct(s["p95"])]
    return out


def share_panels(samples: dict[str, list[dict]]) -> list[tuple[str, object]]:
    """[(panel title, summaries -> values in %)] for the summary picture; [] without a device view."""
    if not has_device(samples):
        return []
    return [(f"{label} (% of window)", lambda ss, m=m: [v * 100 for v in share_values(ss, m)])
            for m, (label, _) in SHARES.items()]
