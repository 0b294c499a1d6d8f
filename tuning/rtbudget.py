"""The real-time budget of one request: how much CPU a real-time thread may use without blocking
before RLIMIT_RTTIME demotes it (tuning/apply.py's safety net). Pure: no syscalls here.

What the kernel counts (kernel/sched/rt.c, kernel/time/posix-cpu-timers.c): per thread, the ticks
it ran as a real-time task since its last *real-time* wake-up (`enqueue_task_rt` zeroes
`p->rt.timeout` on ENQUEUE_WAKEUP; a wake-up as SCHED_OTHER or a policy switch does not). At the
soft limit it sends SIGXCPU and raises the soft limit by one second, every second after.

Why a fixed 2 s limit demoted legitimate work (issue 26, 3-4 of 20 realtime requests):
  - a synthesis computes without blocking: torch's intra-op team keeps every CPU busy, and the
    real IndexTTS on CPU takes 10-20 s per clip, far past any small fixed limit;
  - the synthesis thread applies the preset to *itself* while running, so it never has a
    real-time wake-up until it sleeps; when it does not sleep between requests (back-to-back
    requests, or a policy switched per request), its count carries over request after request.
So, per request: the synthesis thread sleeps once as real-time at the start (its count restarts
at 0; `Tuner.rt_request`), and the soft limit becomes the request's budget:

    budget = clamp(FACTOR x expected, FLOOR_S, CAP_S)        (a preset's rt_budget_s overrides)
    expected = max over the last KEEP completed requests of (wall seconds / characters) x characters
             = UNKNOWN_S before any request was observed (the start-up warm-up is observed)

Wall time bounds every thread's CPU time in the request, so the budget never demotes a request
that runs like the ones before it (up to FACTOR times slower), and a runaway (a loop that never
returns) is demoted within one budget. The limit stays at the last budget between requests:
lowering it while a thread that computed through the request is still real-time and running
would demote it at once; idle threads sleep, and their counts restart. RT throttling
(sched_rt_runtime_us) stays the system-wide net meanwhile: 5% of each CPU for everyone else.
A request that was demoted is not observed (its wall time is what the runaway made it).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

FLOOR_S = 2.0      # the limit between requests, and the smallest per-request budget
FACTOR = 3.0       # budget = FACTOR x the expected synthesis time
CAP_S = 600.0      # never more (a runaway is demoted within 10 minutes at worst)
UNKNOWN_S = 60.0   # before any request was observed: the real IndexTTS on CPU fits in it
KEEP = 8           # recent requests the expected time is taken from (the warm-up drops out after 8)


@dataclass
class RtGrant:
    """What one request got: its budget (None when not real-time), the expected time it came
    from, where it came from, and whether RLIMIT_RTTIME demoted it meanwhile."""

    budget_s: float | None = None
    expected_s: float | None = None
    source: str = ""  # "observed" | "unknown" | "preset"
    demoted: bool = False

    def to_readback(self) -> dict:
        """Keys the clip's preset read-back carries (findings read them)."""
        return {"rt_budget_s": self.budget_s, "rt_budget_source": self.source or None,
                "rt_demoted": self.demoted}


@dataclass
class RtBudget:
    """Expected synthesis time from the recent requests, and the budget derived from it."""

    floor_s: float = FLOOR_S
    factor: float = FACTOR
    cap_s: float = CAP_S
    unknown_s: float = UNKNOWN_S
    keep: int = KEEP
    _rates: deque = field(default_factory=deque, repr=False)  # seconds per character

    def observe(self, wall_s: float, units: int) -> None:
        """A request of `units` characters that took `wall_s` and was not demoted."""
        if wall_s > 0 and units > 0:
            self._rates.append(wall_s / units)
            while len(self._rates) > self.keep:
                self._rates.popleft()

    def expected_s(self, units: int) -> float | None:
        """The slowest recent rate times this request's length; None before any observation."""
        if not self._rates:
            return None
        return max(self._rates) * max(1, units)

    def grant(self, units: int, fixed_s: float | None = None) -> RtGrant:
        """The budget for a request of `units` characters (`fixed_s`: a preset's rt_budget_s)."""
        exp = self.expected_s(units)
        if fixed_s is not None:
            return RtGrant(budget_s=float(fixed_s), expected_s=exp, source="preset")
        if exp is None:
            return RtGrant(budget_s=min(max(self.unknown_s, self.floor_s), self.cap_s), source="unknown")
        return RtGrant(budget_s=min(max(self.factor * exp, self.floor_s), self.cap_s), expected_s=exp,
                       source="observed")
