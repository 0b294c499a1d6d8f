#!/usr/bin/env bash
# The replica on a GPU, through the launcher, on a machine lent by the `device` tool (docs/benchmarks.md).
# Not a test: nothing here runs in CI, and the project never needs a GPU.
# That machine has Python 3.12 + CUDA torch and no network: what its Python lacks of the launcher's
# requirements travels as cp312 wheels in .whl/ (git-ignored; docs/benchmarks.md says how to fetch them).
#   1. ./start_app.sh with PYTHON= the machine's interpreter (the user-env route), 3 requests
#      through gradio_client: round trip, synthesis wall, device, trace mode, events;
#   2. benchmarks/tracing_overhead.py --pairs 30 --engines replica (traced vs untraced, CUDA).
set -uo pipefail
OUT="${OUT:-/tmp/gpu-check}"; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 GRADIO_ANALYTICS_ENABLED=False
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.cuda.is_available())'
echo "kernel $(uname -r), $(nproc) CPUs"

source ./bootstrap.sh && ensure_tracefs  # (start_app.sh does this too; the benchmark below does not)
PYTHON="$(command -v python3)" ./start_app.sh --engine replica --port 7861 --outputs /tmp/gpu-o1 >"$OUT/launch.log" 2>&1 &
launcher=$!
up() { python3 -c 'import urllib.request as u; u.urlopen("http://127.0.0.1:7861/config", timeout=2)' 2>/dev/null; }
for _ in $(seq 240); do up && break; kill -0 "$launcher" 2>/dev/null || break; sleep 1; done
grep -E "^\* (Engine|Tracing|UI)" "$OUT/launch.log" || { tail -40 "$OUT/launch.log"; }
python3 - <<'PY' 2>&1 | tee "$OUT/launcher.txt"
import json, time
from pathlib import Path
from gradio_client import Client
c = Client("http://127.0.0.1:7861/", verbose=False)
for i in range(3):
    t = time.monotonic()
    r = c.predict(text="The quick brown fox jumps over the lazy dog. 今天天气很好，我们去公园散步吧。",
                  api_name="/synthesize")
    rt = time.monotonic() - t
    rec = json.loads((Path("/tmp/gpu-o1/clips") / r[1] / "record.json").read_text())
    bd = rec.get("breakdown") or {}
    tot = bd.get("totals") or {}
    print(f"request {i}: round trip {rt * 1000:.0f} ms, synthesis wall {rec['wall_s'] * 1000:.0f} ms for "
          f"{rec['duration_s']:.2f} s of audio, device {(rec['engine_info'].get('replica') or rec['engine_info']).get('device')}, trace mode "
          f"{bd.get('mode')}, {bd.get('events')} events, on-CPU {tot.get('on_cpu_s', 0) * 1000:.0f} ms, "
          f"run-queue wait {tot.get('runqueue_wait_s', 0) * 1000:.1f} ms, lost {(bd.get('lost_events') or {}).get('total')}")
print("notes:", rec.get("notes"))
PY
python3 -c 'import urllib.request as u; print(u.urlopen("http://127.0.0.1:7861/metrics").read().decode())' | grep -E "^itts_audio_delivery_total|^itts_requests_total" | tee -a "$OUT/launcher.txt"
kill "$launcher"; wait "$launcher"
echo "launcher exit: $?; instances left: $(ls /sys/kernel/tracing/instances 2>/dev/null | tr '\n' ' ')"

timeout 420 python3 benchmarks/tracing_overhead.py --pairs 30 --engines replica --json "$OUT/replica.json" \
    2>"$OUT/bench.err" | tee "$OUT/bench.txt"
tail -3 "$OUT/bench.err"
