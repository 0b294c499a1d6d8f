"""A series of pressure snapshots taken on a schedule: one pinned baseline, a bounded history,
and each new snapshot's verdict against the baseline.

Layout of a series directory:
    series.json      schema, baseline (the pinned snapshot's name), keep, entries (oldest first)
    <name>/          one snapshot directory per entry (tracing/snapshot.py format), name = the
                     UTC time it was started, e.g. 20261128T061500Z
    <name>/diff-vs-baseline.txt   the diff the verdict came from (tracing/diff.format_diff)
    .lock            flock'd while an entry is recorded (two timers, or a timer and the UI)

An entry: {name, created, label, source, n, complete, idle (how long the run waited for the
service to be idle, from the manifest), points, verdict}. `points` is
{preset: {metric: {p50, p95, n}}} for POINT_METRICS (what the Snapshots tab plots over time);
`verdict` is None for the baseline itself, else {baseline, has_regression, regressions (names),
median, tail, blocker (counts), rows: [{preset, metric, verdict, tail_verdict, ratio,
tail_ratio}]}.

Retention: at most `keep` entries; the oldest entries other than the pinned baseline go first,
and their snapshot directories are deleted (only directories inside the series directory).
The first snapshot recorded becomes the baseline; `pin` (or record(pin=True)) moves it.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import shutil
from pathlib import Path

from tracing import diff as D
from tracing import stats
from tracing.snapshot import SnapshotError, load_snapshot

SCHEMA = 1
INDEX = "series.json"
DIFF_FILE = "diff-vs-baseline.txt"
DEFAULT_KEEP = 48          # e.g. two days of hourly snapshots
POINT_METRICS = ("wall", "runqueue_wait")


def _now_name() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def load_series(path: str | os.PathLike) -> dict | None:
    """series.json as a dict, None when the directory holds no series (yet)."""
    f = Path(path) / INDEX
    try:
        data = json.loads(f.read_text())
    except FileNotFoundError:
        return None
    except ValueError as e:
        raise SnapshotError(f"{f} is not valid JSON: {e}") from None
    if data.get("schema") != SCHEMA:
        raise SnapshotError(f"{f}: schema {data.get('schema')!r}, expected {SCHEMA}.")
    return data


def latest(series: dict | None) -> dict | None:
    entries = (series or {}).get("entries") or []
    return entries[-1] if entries else None


def points(snap) -> dict:
    out = {}
    for preset, ss in snap.samples.items():
        out[preset] = {}
        for m in POINT_METRICS:
            s = stats.summarize(D.metric_values(ss, m))
            out[preset][m] = {"p50": _finite(s["p50"]), "p95": _finite(s["p95"]), "n": s["n"]}
    return out


def _finite(v):
    return None if v is None or v != v else float(v)


def verdict(result: D.DiffResult, baseline: str) -> dict:
    return {"baseline": baseline, "has_regression": result.has_regression, "regressions": result.verdicts(),
            "median": len(result.regressions), "tail": len(result.tail_regressions),
            "blocker": len(result.blocker_regressions),
            "rows": [{"preset": r["preset"], "metric": r["metric"], "verdict": r["verdict"],
                      "tail_verdict": r["tail_verdict"], "ratio": _finite(r["ratio"]),
                      "tail_ratio": _finite((r["tail"] or {}).get("ratio"))} for r in result.rows],
            "blockers": [{"preset": b["preset"], "comm": b["comm"], "new_s": b["new_s"]}
                         for b in result.blocker_regressions]}


def format_series(series: dict | None, where: str = "") -> str:
    """What the Snapshots tab says about a series: baseline, size, the latest verdict."""
    if not series or not series.get("entries"):
        return (f"No periodic snapshots in {where or 'the series directory'} yet. Take them with "
                "`python -m app snapshot --url URL --series DIR` (a systemd timer: docs/production.md).")
    last = latest(series)
    lines = [f"Series {where}: {len(series['entries'])} snapshot(s) (keeping {series.get('keep')}), "
             f"baseline {series.get('baseline')}",
             f"latest {last['name']} ({last.get('created')}), N={last.get('n')}"
             + ("" if last.get("complete") else " (INCOMPLETE)")]
    if (last.get("idle") or {}).get("note"):
        lines.append(last["idle"]["note"])
    v = last.get("verdict")
    if v is None:
        lines.append("The latest snapshot is the baseline: nothing to compare yet.")
    elif v["has_regression"]:
        lines.append("REGRESSION against the baseline: " + "; ".join(v["regressions"]))
    else:
        lines.append("No significant regression against the baseline.")
    return "\n".join(lines) + "\n"


class Series:
    def __init__(self, path: str | os.PathLike, keep: int = DEFAULT_KEEP):
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 2:
            raise SnapshotError(f"keep must be an integer >= 2 (the baseline and one more), got {keep!r}.")
        self.path = Path(path)
        self.keep = keep
        self.path.mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def _locked(self):
        with open(self.path / ".lock", "a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _load(self) -> dict:
        return load_series(self.path) or {"schema": SCHEMA, "baseline": None, "keep": self.keep, "entries": []}

    def _save(self, data: dict) -> None:
        tmp = self.path / (INDEX + ".tmp")
        tmp.write_text(json.dumps(data, indent=1, default=str))
        os.replace(tmp, self.path / INDEX)

    def next_dir(self) -> Path:
        """A fresh directory name for the next snapshot (not created)."""
        base = _now_name()
        p, k = self.path / base, 1
        while p.exists():
            k += 1
            p = self.path / f"{base}-{k}"
        return p

    def record(self, snap_dir: str | os.PathLike, pin: bool = False, **diff_kw) -> dict:
        """Add a finished snapshot (a directory inside the series) as the newest entry, diff it
        against the pinned baseline (or pin it: the first one, or pin=True) and apply retention.
        diff_kw go to tracing.diff.diff (alpha, tail gates, blocker_gate_s, ...)."""
        snap_dir = Path(snap_dir)
        if snap_dir.resolve().parent != self.path.resolve():
            raise SnapshotError(f"{snap_dir} is not a directory of the series {self.path}.")
        snap = load_snapshot(snap_dir)
        m = snap.manifest
        entry = {"name": snap_dir.name, "created": m.get("created"), "label": m.get("label"),
                 "source": m.get("source"), "n": m.get("n"), "complete": bool(m.get("complete")),
                 "idle": m.get("idle"), "points": points(snap), "verdict": None}
        with self._locked():
            data = self._load()
            data["keep"] = self.keep
            base = data.get("baseline")
            if base and not (self.path / base / "manifest.json").exists():
                base = None  # deleted by hand: the next snapshot becomes the baseline
            if pin or not base:
                data["baseline"] = entry["name"]
            else:
                result = D.diff(load_snapshot(self.path / base), snap, **diff_kw)
                entry["verdict"] = verdict(result, base)
                (snap_dir / DIFF_FILE).write_text(D.format_diff(result))
            data["entries"] = [e for e in data["entries"] if e["name"] != entry["name"]] + [entry]
            self._retain(data)
            self._save(data)
        return entry

    def pin(self, name: str) -> None:
        with self._locked():
            data = self._load()
            if name not in {e["name"] for e in data["entries"]}:
                raise SnapshotError(f"{name!r} is not in the series {self.path}; entries: "
                                    + ", ".join(e["name"] for e in data["entries"]))
            data["baseline"] = name
            self._save(data)

    def _retain(self, data: dict) -> None:
        entries = data["entries"]
        while len(entries) > self.keep:
            victim = next(e for e in entries if e["name"] != data["baseline"])
            entries.remove(victim)
            d = (self.path / victim["name"]).resolve()
            if d.parent == self.path.resolve() and d.is_dir():
                shutil.rmtree(d, ignore_errors=True)
