"""What N detects what: power and false alarms of the snapshot diff, from real snapshots.

Resamples whole requests (their summary.json, so every metric of a request stays together) from
real snapshot directories and runs tracing.diff.diff with its defaults on each draw, N requests a
side. Scenarios (one preset):
  quiet vs quiet (same)     OLD and NEW both drawn from the first quiet snapshot: pure noise
  quiet vs quiet (in a row) OLD from the first quiet snapshot, NEW from the second, taken later:
                            noise plus whatever drifted on the machine between the two
  pressure                  OLD quiet, NEW from the pressure snapshot (e.g. stress-ng)
  intermittent P %          OLD quiet, NEW: each request from the pressure snapshot with
                            probability P, else from the second quiet one (stalls now and then)
For each: the share of draws with a median regression (REGRESSION), a tail regression (TAIL
REGRESSION), and either (what `diff` exits 1 on). Draws are with replacement, so N close to the
pool size understates the spread a fresh snapshot would have; say the pool sizes with the table.

    .venv/bin/python benchmarks/snapshot_power.py QUIET_A QUIET_B PRESSURE [--preset default]
        [--ns 5,10,20,30] [--trials 300] [--intermittent 25]

Also prints each pool's p50/p95 of wall and run-queue wait (ms), so the table says which
effect it measured. Prints a Markdown table for docs/snapshots.md.
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tracing import diff as D  # noqa: E402
from tracing import stats  # noqa: E402
from tracing.snapshot import load_snapshot  # noqa: E402


@dataclass
class Draw:
    manifest: dict
    samples: dict


def rates(old_pool, new_pool, n, trials, rng, mix=None) -> tuple[float, float, float]:
    med = tail = either = 0
    for _ in range(trials):
        old = [old_pool[i] for i in rng.integers(0, len(old_pool), n)]
        if mix is None:
            new = [new_pool[i] for i in rng.integers(0, len(new_pool), n)]
        else:
            p, quiet_pool = mix
            new = [new_pool[rng.integers(len(new_pool))] if rng.random() < p else quiet_pool[rng.integers(len(quiet_pool))]
                   for _ in range(n)]
        r = D.diff(Draw({}, {"x": old}), Draw({}, {"x": new}))
        med += bool(r.regressions)
        tail += bool(r.tail_regressions)
        either += r.has_regression
    return med / trials, tail / trials, either / trials


def describe(name, pool) -> str:
    w = stats.summarize(D.metric_values(pool, "wall"))
    q = stats.summarize(D.metric_values(pool, "runqueue_wait"))
    return (f"{name}: {len(pool)} requests, wall p50 {w['p50'] * 1000:.0f} / p95 {w['p95'] * 1000:.0f} ms, "
            f"run-queue wait p50 {q['p50'] * 1000:.0f} / p95 {q['p95'] * 1000:.0f} ms")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("quiet_a")
    ap.add_argument("quiet_b")
    ap.add_argument("pressure")
    ap.add_argument("--preset", default="default")
    ap.add_argument("--ns", default="5,10,20,30")
    ap.add_argument("--trials", type=int, default=300)
    ap.add_argument("--intermittent", type=float, default=25.0, help="percent of NEW requests under pressure")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args(argv)
    pools = [load_snapshot(p).samples[a.preset] for p in (a.quiet_a, a.quiet_b, a.pressure)]
    qa, qb, pr = pools
    for name, pool in zip(("quiet A", "quiet B", "pressure"), pools):
        print(describe(name, pool))
    rng = np.random.default_rng(a.seed)
    ns = [int(x) for x in a.ns.split(",")]
    scen = [("quiet vs quiet (same)", qa, qa, None), ("quiet vs quiet (in a row)", qa, qb, None),
            ("pressure", qa, pr, None),
            (f"intermittent {a.intermittent:.0f} %", qa, pr, (a.intermittent / 100, qb))]
    print(f"\nShare of {a.trials} draws flagged (median / tail / either = exit 1), preset {a.preset}:\n")
    print("| scenario | " + " | ".join(f"N={n}" for n in ns) + " |")
    print("|---|" + "---|" * len(ns))
    for name, old, new, mix in scen:
        cells = []
        for n in ns:
            m, t, e = rates(old, new, n, a.trials, rng, mix)
            cells.append(f"{m:.2f} / {t:.2f} / **{e:.2f}**")
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
