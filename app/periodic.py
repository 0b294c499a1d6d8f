"""Periodic snapshots: probe only when the service is idle, keep a series, diff against its baseline.

The schedule itself is the operator's (a systemd timer running `python -m app snapshot --url ...
--series DIR` against the live launcher, docs/production.md): timers are how the service's
operators already run periodic work, they survive launcher restarts (Persistent=), spread a fleet
(RandomizedDelaySec=), log to the journal, and a stuck run never holds the launcher. This module
is what that command adds to a plain snapshot:

- `IdleGate`: before each probe request, wait until the service has been idle (nothing being
  synthesized) for `settle_s`, and count how often and how long it had to wait; the run says so
  and the manifest keeps it (`idle`). The launcher's busy state comes from its /metrics
  (`itts_service_busy`, `metrics_busy`) or, in process, from Service.busy. A user request that
  arrives while a probe runs waits for that one probe (one request, 0.1-0.5 s with the builtin
  engine); a gate cannot reserve the service ahead through HTTP.
- `snapshot_into_series`: run a snapshot into a fresh directory of a tracing.series.Series and
  record it (the first becomes the pinned baseline; later ones get a verdict against it), with
  retention. The launcher exports the latest verdict at /metrics and the Snapshots tab plots the
  series (app/metrics.py, app/ui/snapshots_tab.py).
"""
from __future__ import annotations

import shutil
import time
import urllib.request
from pathlib import Path
from typing import Callable

from tracing.series import Series
from tracing.snapshot import SnapshotError

BUSY_METRIC = "itts_service_busy"


class IdleGate:
    """`wait()` returns once `is_busy()` has been false for settle_s in a row (polled every
    poll_s); raises SnapshotError after timeout_s of busy. is_busy may return None: unknown."""

    def __init__(self, is_busy: Callable[[], bool | None], settle_s: float = 0.5, poll_s: float = 0.1,
                 timeout_s: float = 600.0, clock=time.monotonic, sleep=time.sleep):
        self.is_busy, self.settle_s, self.poll_s, self.timeout_s = is_busy, settle_s, poll_s, timeout_s
        self.clock, self.sleep = clock, sleep
        self.waits = 0          # probes that found the service busy
        self.waited_s = 0.0     # time spent waiting for it, summed
        self.unknown = False    # the busy state could not be read

    def wait(self) -> None:
        start = self.clock()
        idle_since, was_busy = None, False
        while True:
            busy = self.is_busy()
            now = self.clock()
            if busy is None:
                self.unknown = True
                return
            if busy:
                was_busy, idle_since = True, None
                if now - start >= self.timeout_s:
                    raise SnapshotError(f"The service stayed busy for {self.timeout_s:.0f} s: no snapshot "
                                        "taken (the next scheduled run tries again).")
            else:
                idle_since = now if idle_since is None else idle_since
                if now - idle_since >= self.settle_s:
                    break
            self.sleep(self.poll_s)
        if was_busy:
            self.waits += 1
            self.waited_s += self.clock() - start

    def to_dict(self) -> dict:
        return {"waits": self.waits, "waited_s": round(self.waited_s, 3), "settle_s": self.settle_s,
                "unknown": self.unknown}

    def note(self) -> str:
        if self.unknown:
            return f"idle: unknown (the launcher does not export {BUSY_METRIC}); probes were not held back"
        if not self.waits:
            return "idle: the service was idle before every probe"
        return (f"idle: waited {self.waited_s:.1f} s in all, {self.waits} time(s), for user requests to finish "
                "before probing")


def series_dir(args) -> Path:
    """The launcher's series directory: --snapshot-series, else <outputs>/snapshot-series."""
    return Path(getattr(args, "snapshot_series", None) or Path(args.outputs) / "snapshot-series").resolve()


def metrics_busy(url: str, timeout: float = 5.0) -> Callable[[], bool | None]:
    """is_busy for IdleGate from a launcher's /metrics (None when it does not export the gauge)."""
    target = url.rstrip("/") + "/metrics"

    def is_busy() -> bool | None:
        try:
            with urllib.request.urlopen(target, timeout=timeout) as r:
                text = r.read().decode("utf-8", "replace")
        except OSError as e:
            raise SnapshotError(f"Cannot read {target} to see whether the service is idle: {e}") from None
        for line in text.splitlines():
            if line.startswith(BUSY_METRIC + " ") or line.startswith(BUSY_METRIC + "{"):
                return float(line.rsplit(" ", 1)[1]) > 0
        return None

    return is_busy


def snapshot_into_series(series: Series, run: Callable[[Path], object], pin: bool = False,
                         **diff_kw) -> dict:
    """run(dest) takes the snapshot into a fresh directory of the series; the result is recorded
    (tracing.series.Series.record). A run that fails leaves nothing behind in the series."""
    dest = series.next_dir()
    try:
        run(dest)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    return series.record(dest, pin=pin, **diff_kw)
