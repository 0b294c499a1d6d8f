"""Re-reading a clip away from the machine it ran on: `python -m tracing analyze PATH`.

PATH is a clip attachment (trace.zip), a trace.txt (the instance's text trace) or a trace.dat.
The events are analysed again with the same code as the service (tracing/analysis.py, findings,
the device view when a profile is given or in the zip), so the printout is the clip's breakdown.
What the trace alone cannot say comes from the attachment's summary.json when there is one: the
process id, the window bounds, the threads (which matters: trace.dat has no tgid column, so a
thread that came and went inside the window is only known as ours from there), the lost-event
counters, the events that could not be enabled, the latency tracers' results, the thread roles
and the preset in force (for findings).
Event sources, best first: trace.dat through `trace-cmd report -N -t` (the kernel's own event
formats, full nanosecond timestamps: the numbers are the clip's to float rounding), else trace.txt
(microsecond timestamps: each state boundary moves by up to 1 us, so sums differ by microseconds).
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import zipfile
from collections import Counter
from pathlib import Path

from . import analysis, parse
from .attachment import DEVICE_PROFILE, SUMMARY, TRACE, TRACE_DAT
from .device import annotate_threads, device_section
from .findings import findings as make_findings
from .clock import alignment
from .kineto import parse_profile


_PRINT = re.compile(r"(\d: )print:\s+tracing_mark_write: ")


class OfflineError(RuntimeError):
    """The input cannot be analysed (the message says why and what to pass)."""


def _report_dat(path: Path) -> str:
    tc = shutil.which("trace-cmd")
    if tc is None:
        raise OfflineError(f"{path} is a trace.dat, and reading it needs trace-cmd (not installed); "
                           f"pass the attachment's trace.txt instead")
    r = subprocess.run([tc, "report", "-N", "-t", "-i", str(path)], capture_output=True, text=True,
                       errors="surrogateescape")
    if r.returncode != 0:
        raise OfflineError(f"trace-cmd report -i {path} failed: {r.stderr.strip()[-300:]}")
    # trace-cmd names the marker event after its format ("print: tracing_mark_write: <text>");
    # the kernel's text calls it tracing_mark_write, which is what the parser knows
    return _PRINT.sub(r"\1tracing_mark_write: ", r.stdout)


def load_input(path, profile=None) -> dict:
    """{text, source, summary, profile_doc} from PATH (zip / trace.txt / trace.dat) and --profile."""
    p = Path(path)
    if not p.exists():
        raise OfflineError(f"{p} does not exist")
    out = {"summary": None, "profile_doc": None}
    if zipfile.is_zipfile(p):
        with zipfile.ZipFile(p) as zf, tempfile.TemporaryDirectory() as tmp:
            names = set(zf.namelist())
            if SUMMARY in names:
                out["summary"] = json.loads(zf.read(SUMMARY))
            if DEVICE_PROFILE in names:
                out["profile_doc"] = json.loads(zf.read(DEVICE_PROFILE))
            if TRACE_DAT in names and shutil.which("trace-cmd"):
                zf.extract(TRACE_DAT, tmp)
                out["text"], out["source"] = _report_dat(Path(tmp) / TRACE_DAT), "trace.dat"
            elif TRACE in names:
                out["text"], out["source"] = zf.read(TRACE).decode("utf-8", "surrogateescape"), "trace.txt"
            else:
                raise OfflineError(f"{p} holds no trace.txt nor trace.dat (a schedstat-mode clip has no trace "
                                   f"to re-analyse)")
    elif p.read_bytes()[:10].startswith(b"\x17\x08\x44tracing"):
        out["text"], out["source"] = _report_dat(p), "trace.dat"
    else:
        out["text"], out["source"] = p.read_text(errors="surrogateescape"), "trace.txt"
    if profile is not None:
        out["profile_doc"] = json.loads(Path(profile).read_text())
    return out


def _guess_pid(ev: parse.Events) -> int | None:
    """The tgid of the stage markers (`B|<tgid>|...`): the traced process."""
    tg = Counter()
    for i in range(len(ev)):
        if ev.kind[i] == parse.K_MARKER:
            parts = ev.sa(i).strip().split("|")
            if len(parts) > 2 and parts[0] == "B" and parts[1].isdigit():
                tg[int(parts[1])] += 1
    return tg.most_common(1)[0][0] if tg else None


def analyse(inp: dict, pid: int | None = None) -> tuple[dict, list, dict]:
    """(breakdown dict, findings, meta) of a loaded input, as the clip had them."""
    ev = parse.parse_trace(inp["text"])
    summ = inp.get("summary") or {}
    sbd = summ.get("breakdown") if isinstance(summ.get("breakdown"), dict) else {}
    pid = pid or sbd.get("pid") or summ.get("pid") or _guess_pid(ev)
    if pid is None:
        raise OfflineError("which process? no summary.json and no stage markers: pass --pid")
    if not len(ev):
        raise OfflineError("no events in the trace")
    win = sbd.get("window") or {}
    start = float(win.get("start_s", ev.ts[0]))
    end = float(win.get("end_s", ev.ts[-1]))
    tids = [t["tid"] for t in sbd.get("threads") or [] if isinstance(t.get("tid"), int)]
    bd = analysis.analyze(ev, int(pid), start, end, lost=sbd.get("lost_events"), tids=tids).to_dict()
    bd["source"] = inp["source"]
    for k in ("latency", "missing_events"):  # facts of the capture, not of the events
        if sbd.get(k):
            bd[k] = sbd[k]
    roles = {t["tid"]: t.get("role") for t in sbd.get("threads") or [] if isinstance(t.get("tid"), int)}
    for t in bd["threads"]:
        t["role"] = roles.get(t["tid"])
    if inp.get("profile_doc") is not None:
        tid_map = {int(k): v for k, v in (((sbd.get("device") or {}).get("profile") or {}).get("tid_map") or {}).items()}
        bd["device"] = device_section(parse_profile(inp["profile_doc"], tid_map), bd, alignment(bd.get("markers")))
    elif sbd.get("device"):
        bd["device"] = sbd["device"]  # why the clip had none: still true
    if bd.get("device"):
        annotate_threads(bd)
    ctx = {"preset": summ.get("preset"), "roles": {t: r for t, r in roles.items() if r}}
    meta = {"request_id": summ.get("request_id", "-"), "created": summ.get("created"),
            "engine": summ.get("engine_label", summ.get("engine", "-")), "preset": summ.get("preset"),
            "wall_s": summ.get("wall_s"), "duration_s": summ.get("duration_s"),
            "extra": {"Re-analysed from": inp["source"] + (" + summary.json" if summ else "")}}
    return bd, make_findings(bd, ctx), meta
