"""The preset advisor: a short measured trial of the presets on the serving engine, under whatever
the machine is doing now, and a recommendation with its evidence. It never applies a preset: the
operator does, from the Scheduling tab or with --preset. (tuned-adm recommends from static rules;
this measures.)

    recommend(samples)   pure: the rule, shared with benchmarks/preset_efficacy.py ("best")
    trial(service, ...)  N traced requests per candidate preset through app/snapshot_runs.py
                         (request-scoped presets, interleaved), into an Advice
    python -m app advise [-n 5] [--presets a,b] [--url URL]     the command

The rule: the preset with the lowest p95 wall time; presets within TIE_RATIO of that p95 count
as tied, and the least invasive of them wins (`invasiveness`: real-time, machine-wide `away`
knobs, nice boosts, pinning, in that order of weight), then the lower p95. Percentiles are
nearest-rank (p95 of 5 samples is the largest): a short trial's p95 is its worst request.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass, field

from tracing.diff import blocker_means, metric_values

TIE_RATIO = 1.05  # p95 within 5% of the best counts as the same
DEFAULT_TRIAL_N = 5
BLOCKER_SHOWN_S = 0.0005  # blockers below 0.5 ms per request are not evidence of anything
TRIAL_TEXT = "The quick brown fox jumps over the lazy dog, and the scheduler decides who runs next."


def percentile(xs, q: float) -> float:
    """Nearest-rank percentile, q in 0..100 (NaN for none)."""
    s = sorted(float(x) for x in xs)
    if not s:
        return math.nan
    return s[max(0, math.ceil(q / 100 * len(s)) - 1)]


def invasiveness(preset) -> int:
    """How much a preset changes (lower = less): real-time 8, machine-wide `away` knobs 4,
    a nice boost 2, pinned CPUs 1. `preset` is a tuning.presets.Preset or its dict."""
    get = (lambda k: preset.get(k)) if isinstance(preset, dict) else (lambda k: getattr(preset, k, None))
    score = 0
    if get("policy") in ("fifo", "rr"):
        score += 8
    if get("away"):
        score += 4
    nice = get("nice")
    if isinstance(nice, int) and nice < 0:
        score += 2
    if get("cpus") not in (None, "all"):
        score += 1
    return score


def recommend(samples: dict[str, list[float]], costs: dict[str, int] | None = None) -> dict:
    """{preset: wall seconds} -> {"preset", "rows": {preset: {n, p50_s, p95_s}}, "tied", "rule"}.
    Presets with no sample are left out; None when nothing was measured."""
    costs = costs or {}
    rows = {p: {"n": len(v), "p50_s": percentile(v, 50), "p95_s": percentile(v, 95)} for p, v in samples.items() if v}
    if not rows:
        return {"preset": None, "rows": {}, "tied": [], "rule": "nothing measured"}
    best = min(r["p95_s"] for r in rows.values())
    tied = [p for p, r in rows.items() if r["p95_s"] <= best * TIE_RATIO]
    pick = min(tied, key=lambda p: (costs.get(p, 0), rows[p]["p95_s"]))
    rule = (f"lowest p95 wall time; presets within {round((TIE_RATIO - 1) * 100)}% of it ({', '.join(tied)}) "
            f"are tied and the least invasive wins")
    return {"preset": pick, "rows": rows, "tied": tied, "rule": rule}


@dataclass
class Advice:
    """A trial's outcome: the recommendation and the evidence behind it."""

    recommended: str | None
    rule: str
    n: int
    rows: dict = field(default_factory=dict)       # preset -> {n, p50_s, p95_s}
    blockers: dict = field(default_factory=dict)   # preset -> [[comm, mean s per request], ...] (top 3)
    findings: dict = field(default_factory=dict)   # preset -> {kind: requests with a warn/crit finding}
    refused: dict = field(default_factory=dict)    # preset -> why it could not be tried
    load: list = field(default_factory=list)       # /proc/loadavg at the start and end
    note: str = "Nothing was applied: apply the recommended preset from the Scheduling tab or with --preset."

    def to_dict(self) -> dict:
        return asdict(self)


def candidates(tuner) -> tuple[list[str], dict[str, str]]:
    """Presets worth a trial, and the ones skipped with why: not those that yield to everything
    by design (nice > 0, batch/idle), nor real-time ones on a service without --allow-realtime."""
    out, skipped = [], {}
    for name in tuner.allowed:
        p = tuner.presets.get(name)
        if p is None:  # a computed preset not available here (gpu-local without a GPU)
            skipped[name] = "not available on this machine"
        elif (p.nice or 0) > 0 or p.policy in ("batch", "idle"):
            skipped[name] = "yields to other work by design"
        elif p.realtime and not tuner.allow_realtime:
            skipped[name] = "real-time: the service runs without --allow-realtime"
        else:
            out.append(name)
    return out, skipped


def trial(svc, presets: list[str] | None = None, n: int = DEFAULT_TRIAL_N, text: str = TRIAL_TEXT,
          progress=None, workdir: str | None = None) -> Advice:
    """N traced requests per candidate preset on `svc` (an app.service.Service), interleaved and
    request-scoped (the service's preset is back in force after each): the recommendation with
    p50/p95 per preset, the blockers each left and their findings. A preset the tuner refuses is
    reported, not tried."""
    from app.snapshot_runs import run_service
    from models.base import InputError, SynthesisRequest
    from tuning.apply import TuningError

    load0 = _loadavg()
    names, refused = candidates(svc.tuner) if presets is None else (list(dict.fromkeys(presets)), {})
    tried = []
    for p in names:  # one untraced request each: the refusals, and the warm-up of each preset
        try:
            rec = svc.synthesize(SynthesisRequest(text=text), preset=p, scope="request", trace=False, history=False)
            svc.store.discard(rec.id)
            tried.append(p)
        except (TuningError, InputError) as e:  # refused by the tuner, or not a preset of this service
            refused[p] = str(e)
    if not tried:
        return Advice(None, "no preset could be tried", n, refused=refused, load=[load0, _loadavg()])
    tmp = tempfile.mkdtemp(prefix="itts-advise-", dir=workdir)
    try:
        snap = run_service(svc, os.path.join(tmp, "trial"), tried, n, text, label="advisor trial",
                           source="advisor", warmup=False, progress=progress)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return advice_from(snap.samples, n, svc.tuner.presets, refused, [load0, _loadavg()])


def advice_from(samples: dict, n: int, table, refused: dict, load: list) -> Advice:
    """A snapshot's samples ({preset: [request summary]}) -> Advice; `table`: name -> Preset
    (for invasiveness; presets it does not know count as 0)."""
    walls = {p: metric_values(ss, "wall") for p, ss in samples.items()}
    costs = {p: invasiveness(table[p]) for p in walls if p in table}
    rec = recommend(walls, costs)
    blockers = {p: [[k, round(v, 6)] for k, v in list(blocker_means(ss).items())[:3] if v >= BLOCKER_SHOWN_S]
                for p, ss in samples.items()}
    found = {}
    for p, ss in samples.items():  # per kind: how many requests had it at warn or crit
        c = Counter()
        for s in ss:
            c.update({f["kind"] for f in s.get("findings") or [] if f.get("severity") in ("warn", "crit")})
        found[p] = dict(c)
    return Advice(rec["preset"], rec["rule"], n, rows=rec["rows"], blockers=blockers, findings=found,
                  refused=refused, load=load)


def _loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def format_advice(a: Advice) -> str:
    """The advice as text: the recommendation, then one line per preset."""
    lines = [f"Recommended: {a.recommended or 'none'} ({a.rule}); {a.n} requests per preset, "
             f"load average {' -> '.join(a.load)}."]
    for p, r in sorted(a.rows.items(), key=lambda kv: kv[1]["p95_s"]):
        bl = ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in a.blockers.get(p, [])) or "none"
        fk = ", ".join(f"{k} x{v}" for k, v in sorted(a.findings.get(p, {}).items())) or "none"
        mark = "*" if p == a.recommended else " "
        lines.append(f"{mark} {p:<16} p50 {r['p50_s'] * 1000:8.1f} ms  p95 {r['p95_s'] * 1000:8.1f} ms  "
                     f"blockers/request: {bl}; findings: {fk}")
    for p, why in a.refused.items():
        lines.append(f"  {p:<16} not tried: {why}")
    lines.append(a.note)
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------- CLI ----
def register_cli(sub) -> None:
    s = sub.add_parser("advise", help="try the presets on the engine now and recommend one (applies nothing)",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="examples:\n"
                              "  python -m app advise                      # in process, builtin engine, N=5\n"
                              "  python -m app advise -n 10 --presets default,pinned,realtime --allow-realtime\n"
                              "  ITTS_OPERATOR_TOKEN=... python -m app advise --url http://127.0.0.1:7860/")
    s.add_argument("-n", type=int, default=DEFAULT_TRIAL_N, help="traced requests per preset (default 5)")
    s.add_argument("--presets", default=None, help="comma-separated presets (default: every allowed preset that "
                                                   "does not yield by design)")
    s.add_argument("--url", help="advise for a running launcher (its presets, its engine, its machine)")
    s.add_argument("--engine", default="auto", help="in-process engine: auto | builtin | indextts2 | replica")
    s.add_argument("--model-dir", default="./checkpoints")
    s.add_argument("--presets-file", default=None, help="in-process: operator presets TOML")
    s.add_argument("--allow-realtime", action="store_true", help="in-process: also try real-time presets")
    s.add_argument("--text", default=TRIAL_TEXT)
    s.add_argument("--json", default=None, help="also write the advice here (JSON)")
    s.set_defaults(func=_cli)


def _cli(args) -> int:
    from tracing.snapshot import SnapshotError
    presets = [p.strip() for p in args.presets.split(",") if p.strip()] if args.presets else None
    try:
        a = _remote(args, presets) if args.url else _in_process(args, presets)
    except (SnapshotError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # launcher down, request refused: a sentence, exit 2
        print(f"error: the trial failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    print(format_advice(a), end="")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(a.to_dict(), f, indent=1)
    return 0 if a.recommended else 2


def _in_process(args, presets) -> Advice:
    from app.service import Service
    from app.store import ClipStore
    from models.registry import create_engine
    from tracing.tracefs import find_tracefs
    from tuning.apply import Tuner
    from tuning.presets import load_presets

    table = load_presets(args.presets_file)
    tuner = Tuner(table, allow_realtime=args.allow_realtime)  # the main thread: the SIGXCPU net
    work = tempfile.mkdtemp(prefix="itts-advise-")
    svc = Service(create_engine(args.engine, model_dir=args.model_dir), tuner,
                  ClipStore(work, max_clips=10_000, max_bytes=1 << 40), tracing_enabled=True,
                  trace_root=find_tracefs(None))
    try:
        return trial(svc, presets, args.n, args.text, progress=_progress)
    finally:
        svc.close()
        tuner.close()
        shutil.rmtree(work, ignore_errors=True)


def _remote(args, presets) -> Advice:
    """Against a running launcher: the same trial through its API (app.snapshot_runs.run_remote)."""
    from gradio_client import Client

    from app.access import TOKEN_ENV, TOKEN_HEADER
    from app.snapshot_runs import run_remote
    from tuning.presets import load_presets

    token = os.environ.get(TOKEN_ENV)
    client = Client(args.url, verbose=False, headers={TOKEN_HEADER: token} if token else None)
    names = presets or ["default", "pinned", "priority", "pinned-priority"]
    tried, refused = [], {}
    for p in names:
        try:
            client.predict(text=args.text, preset=p, scope="this request only", trace=False, api_name="/synthesize")
            tried.append(p)
        except Exception as e:  # the server's sentence (unknown preset, not allowed, refused)
            refused[p] = str(e)
    load0 = _loadavg()
    tmp = tempfile.mkdtemp(prefix="itts-advise-")
    try:
        snap = run_remote(os.path.join(tmp, "trial"), args.url, tried, args.n, args.text, label="advisor trial",
                          warmup=False, progress=_progress)
        return advice_from(snap.samples, args.n, load_presets(args.presets_file), refused, [load0, _loadavg()])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _progress(f: float, desc: str) -> None:
    print(f"[{f * 100:3.0f}%] {desc}", file=sys.stderr, flush=True)
