"""Issue 22's GPU check, against a running launcher (benchmarks/gpu_device_view_check.sh starts it):
requests with and without a planted SCHED_FIFO hog of known length, pinned to the CPU of the
launching (synthesis) thread and released while that thread feeds the GPU. Per clip it reads the
device section (tracing/device.py) and prints: host_wait, GPU idle, the blamed blocker and its time,
the clock alignment error and the probe residual. The check: host_wait grows by about the hog's
length and the blame names the hog within 10% of its length. Slim attachments (summary.json,
trace.txt, device_profile.json: no trace.dat or picture) of one clip of each kind are written to
OUT/fixtures/, for tests/data/gpu/ (tests/test_device_fixtures.py re-analyses them on CPU); the
same clips' timeline.png (GPU lanes on CUDA) as OUT/timeline-nohog.png and OUT/timeline-hog.png.

Without CUDA (`--dry-run`: the builtin engine with --device-view cpu) the same steps run and the
kernel trace's own blocker table stands in for the host_wait blame; nothing is written as a GPU
fixture.

    python benchmarks/gpu_device_view_check.py --url URL --pid PID --outputs DIR --out OUT
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import zipfile
from pathlib import Path

HOG = r"""
import os, sys, time
cpu, secs = int(sys.argv[1]), float(sys.argv[2])
os.sched_setaffinity(0, {cpu})
open("/proc/self/comm", "w").write("itts-gpu-hog")
os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
sys.stdout.write("ready\n"); sys.stdout.flush()
sys.stdin.read(1)
end = time.monotonic() + secs
while time.monotonic() < end:
    pass
sys.stdout.write("done\n"); sys.stdout.flush()
sys.stdin.read(1)
"""
TEXT = "The quick brown fox jumps over the lazy dog. 今天天气很好，我们去公园散步吧。"
SLIM = ("summary.json", "trace.txt", "device_profile.json")


def synth_cpu(pid: int) -> tuple[int, int]:
    """(tid, CPU) of the server's synthesis thread (named tts-synth by tuning/roles.py)."""
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            if Path(f"/proc/{pid}/task/{t}/comm").read_text().strip() == "tts-synth":
                cpus = sorted(os.sched_getaffinity(int(t)))
                return int(t), cpus[-1]
        except OSError:
            continue
    raise SystemExit("no tts-synth thread in the server (no request served yet?)")


def synthesis_running(pid: int, timeout: float = 30.0) -> bool:
    """Wait until a thread named tts-synth (tuning/roles.py names the thread about to synthesize)
    is running: the request's synthesis has begun."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for t in os.listdir(f"/proc/{pid}/task"):
            try:
                stat = Path(f"/proc/{pid}/task/{t}/stat").read_text()
            except OSError:
                continue
            name, state = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2]
            if name == "tts-synth" and state == "R":
                return True
        time.sleep(0.002)
    return False


def request(client, gen: dict, pid: int, hog=None, hog_delay: float = 0.3) -> tuple[str, float]:
    t0 = time.monotonic()
    job = client.submit(text=TEXT, api_name="/synthesize", **gen)
    if hog is not None:
        if not synthesis_running(pid):
            raise SystemExit("the synthesis did not start within 30 s")
        time.sleep(hog_delay)  # into the stage that feeds the GPU
        hog.stdin.write("x")
        hog.stdin.flush()
    out = job.result()
    return out[1], time.monotonic() - t0


def clip_figures(outputs: Path, rid: str, hog_pid: int | None) -> dict:
    rec = json.loads((outputs / "clips" / rid / "record.json").read_text())
    bd = rec.get("breakdown") or {}
    dv = bd.get("device") or {}
    t = dv.get("totals") or {}
    hc = t.get("host_cause") or {}
    blk = next((b for b in hc.get("blockers") or [] if hog_pid and b["blocker"].endswith(f":{hog_pid}")), None)
    synth = {t["tid"] for t in bd.get("threads") or [] if t.get("role") == "synthesis"}
    # the synthesis thread's own wait behind the hog (the blocker table sums over all our threads)
    kblk = sum(g["end_s"] - g["start_s"] for g in bd.get("segments") or [] if g["tid"] in synth
               and g["state"] == "runnable" and str(g.get("blocker") or "").endswith(f":{hog_pid}")) if hog_pid else 0
    return {"rid": rid, "wall_s": rec.get("wall_s"), "status": dv.get("status"), "why": dv.get("why"),
            "host_wait_s": t.get("host_wait_s"), "idle_s": t.get("idle_s"), "busy_s": t.get("busy_s"),
            "kernels": t.get("kernels"), "hog_blamed_s": blk["time_s"] if blk else None,
            "hog_in_kernel_trace_s": kblk,
            "top_blocker": (hc.get("blockers") or [{}])[0].get("blocker"), "headline": dv.get("headline"),
            "clock_error_us": (dv.get("clock") or {}).get("error_us"),
            "probe_residual_us": (dv.get("clock") or {}).get("probe_residual_us"),
            "spinning_s": sum(r.get("spinning_s", 0) for r in (dv.get("gpu_waits") or {}).get("threads") or []),
            "attachment": rec.get("attachment_path")}


def slim(src: str, dest: Path) -> int:
    with zipfile.ZipFile(src) as zi, zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zo:
        for n in SLIM:
            if n in zi.namelist():
                zo.writestr(n, zi.read(n))
    return dest.stat().st_size


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--pid", type=int, required=True, help="the launcher's pid (start_app.sh execs webui.py)")
    ap.add_argument("--outputs", required=True, help="the launcher's --outputs")
    ap.add_argument("--out", required=True, help="where figures and fixtures go")
    ap.add_argument("--requests", type=int, default=3, help="per condition (interleaved)")
    ap.add_argument("--hog-ms", type=float, default=300.0)
    ap.add_argument("--hog-delay", type=float, default=None,
                    help="seconds after the synthesis starts (default 0.3 on a GPU, 0.02 in a dry run)")
    ap.add_argument("--generation", default='{"max_mel_tokens": 120, "num_beams": 1}')
    ap.add_argument("--dry-run", action="store_true", help="no CUDA: same steps, no GPU fixtures")
    args = ap.parse_args(argv)
    from gradio_client import Client
    out, outputs = Path(args.out), Path(args.outputs)
    (out / "fixtures").mkdir(parents=True, exist_ok=True)
    gen = json.loads(args.generation) if not args.dry_run else {}
    if args.hog_delay is None:
        args.hog_delay = 0.02 if args.dry_run else 0.3
    client = Client(args.url, verbose=False)
    request(client, gen, args.pid)  # warm (and the synthesis thread gets its name)
    tid, cpu = synth_cpu(args.pid)
    print(f"synthesis thread {tid} on CPU {cpu}; hog {args.hog_ms:.0f} ms SCHED_FIFO 10 released {args.hog_delay} s "
          f"after a request's synthesis starts")
    rows = {"nohog": [], "hog": []}
    for i in range(args.requests):
        for kind in (("nohog", "hog") if i % 2 == 0 else ("hog", "nohog")):
            hog = None
            if kind == "hog":
                hog = subprocess.Popen([sys.executable, "-c", HOG, str(cpu), str(args.hog_ms / 1e3)],
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                assert hog.stdout.readline().strip() == "ready"
            try:
                rid, rt = request(client, gen, args.pid, hog, args.hog_delay)
                if hog is not None:
                    assert hog.stdout.readline().strip() == "done"
            finally:
                if hog is not None:
                    hog.kill()
                    hog.wait()
            time.sleep(1.0)  # the clip's post-processing (the record is saved at the end of it)
            for _ in range(60):
                if (outputs / "clips" / rid / "record.json").exists():
                    break
                time.sleep(0.5)
            f = clip_figures(outputs, rid, hog.pid if hog else None)
            f["round_trip_s"] = rt
            rows[kind].append(f)
            print(f"{kind:5s} {rid}: round trip {rt * 1e3:.0f} ms, wall {f['wall_s'] * 1e3:.0f} ms, device "
                  f"{f['status']}" + (f" ({f['why']})" if f["why"] else "") + f", host_wait "
                  f"{(f['host_wait_s'] or 0) * 1e3:.1f} ms, hog blamed {(f['hog_blamed_s'] or 0) * 1e3:.1f} ms "
                  f"(synthesis thread runnable behind it in the kernel trace: {(f['hog_in_kernel_trace_s'] or 0) * 1e3:.1f} ms), clock error "
                  f"{f['clock_error_us']} us, probe {f['probe_residual_us']} us", flush=True)
            print(f"      {f['headline']}")
    hw = {k: statistics.median([r["host_wait_s"] or 0 for r in v]) for k, v in rows.items()}
    hog_s = args.hog_ms / 1e3
    blamed = [r["hog_blamed_s"] or 0 for r in rows["hog"]]
    ktrace = [r["hog_in_kernel_trace_s"] or 0 for r in rows["hog"]]
    summary = {"host_wait_median_s": hw, "host_wait_growth_s": hw["hog"] - hw["nohog"], "hog_s": hog_s,
               "hog_blamed_s": blamed, "hog_in_kernel_trace_s": ktrace, "dry_run": args.dry_run, "rows": rows}
    print(f"host_wait median: no hog {hw['nohog'] * 1e3:.1f} ms, hog {hw['hog'] * 1e3:.1f} ms -> grew "
          f"{summary['host_wait_growth_s'] * 1e3:.1f} ms for a {args.hog_ms:.0f} ms hog")
    if args.dry_run:
        ok = all(abs(k - hog_s) <= 0.1 * hog_s for k in ktrace)
        print(f"DRY RUN (no CUDA): no host_wait to blame; the kernel trace names the hog for "
              f"{', '.join(f'{k * 1e3:.0f}' for k in ktrace)} ms -> {'ok' if ok else 'NOT within 10%'}")
    else:
        ok = all(abs(b - hog_s) <= 0.1 * hog_s for b in blamed)
        print(f"CHECK host_wait blamed on the hog: {', '.join(f'{b * 1e3:.0f}' for b in blamed)} ms for a "
              f"{args.hog_ms:.0f} ms hog -> {'PASS' if ok else 'FAIL'} (within 10%)")
    for kind in ("nohog", "hog"):
        name = f"{'dryrun' if args.dry_run else 'gpu'}-{kind}.zip"
        size = slim(rows[kind][-1]["attachment"], out / "fixtures" / name)
        print(f"fixture {out / 'fixtures' / name}: {size / 1024:.0f} KiB")
        with zipfile.ZipFile(rows[kind][-1]["attachment"]) as z:  # the PNG with its GPU lanes, to look at
            if "timeline.png" in z.namelist():
                (out / f"timeline-{kind}.png").write_bytes(z.read("timeline.png"))
    (out / "gpu_device_view.json").write_text(json.dumps(summary, indent=1, default=str))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
