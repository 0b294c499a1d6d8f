#!/usr/bin/env bash
# Issue 22 on a lent GPU (the `device` tool), one shot, ~6 minutes: the replica on CUDA through the
# launcher with and without a planted SCHED_FIFO hog on the synthesis thread's CPU, the device view's
# figures, slim attachments as fixtures, then the device view's cost. Not a test; nothing here runs in
# CI and the project never needs a GPU. Beside gpu_launcher_check.sh (same carried-wheels setup:
# what that machine's Python 3.12 lacks travels as cp312 wheels in .whl/, README "On a GPU").
#   device call:  bash benchmarks/gpu_device_view_check.sh        (carry .whl; results under $OUT)
#   fixtures:     cp $OUT/fixtures/gpu-*.zip tests/data/gpu/      (then tests/test_device_fixtures.py runs)
# Without CUDA it says "no CUDA" and dry-runs the same steps on the builtin engine with
# --device-view cpu (PYTHON= picks the interpreter; here: .venv/bin/python), exit 0 when they work.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/gpu-device-view}"; mkdir -p "$OUT"
PY="${PYTHON:-python3}"
if [ -d .whl ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONUNBUFFERED=1 GRADIO_ANALYTICS_ENABLED=False
echo "load average $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs, kernel $(uname -r)"
if "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,pci.bus_id --format=csv,noheader
    "$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'
    ENGINE=(--engine replica --device-view auto); DRY=(); GPU=1
else
    echo "no CUDA on this machine (torch.cuda.is_available() is False): the GPU run is owed; dry run of the same"
    echo "steps on the builtin engine with --device-view cpu (no kernels, no GPU fixtures)"
    ENGINE=(--engine builtin --device-view cpu); DRY=(--dry-run); GPU=0
fi
source ./bootstrap.sh && ensure_tracefs
PORT=7871; O="$OUT/outputs"; rm -rf "$O"
PYTHON="$(command -v "$PY")" ./start_app.sh "${ENGINE[@]}" --preset pinned --port $PORT --outputs "$O" \
    --i-know-this-is-open >"$OUT/launch.log" 2>&1 &
launcher=$!
up() { "$PY" -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$PORT/config', timeout=2)" 2>/dev/null; }
for _ in $(seq 300); do up && break; kill -0 "$launcher" 2>/dev/null || break; sleep 1; done
grep -E "^\* (Engine|Tracing|GPU-local)" "$OUT/launch.log" || tail -40 "$OUT/launch.log"
"$PY" benchmarks/gpu_device_view_check.py --url "http://127.0.0.1:$PORT/" --pid "$launcher" --outputs "$O" \
    --out "$OUT" "${DRY[@]}" 2>&1 | tee "$OUT/check.txt"
rc=${PIPESTATUS[0]}
kill "$launcher"; wait "$launcher"
echo "launcher exit: $?; instances left: $(ls /sys/kernel/tracing/instances 2>/dev/null | tr '\n' ' ')"
if [ "$GPU" = 1 ]; then
    timeout 300 "$PY" benchmarks/device_view_cost.py --pairs 10 --engines replica --on-level auto \
        --replica-generation '{"max_mel_tokens": 120, "num_beams": 1}' --json "$OUT/cost.json" 2>"$OUT/cost.err" \
        | tee "$OUT/cost.txt"
fi
exit $rc
