#!/usr/bin/env bash
# The test command: sets up .venv (with test deps), the system tools the tests drive for real
# (trace-cmd, stress-ng, chromium, ffmpeg, prometheus + promtool, nginx; installed with apt when missing and we
# are root), mounts tracefs,
# then runs pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
source ./bootstrap.sh
bootstrap_venv requirements-dev.txt
missing=()
command -v trace-cmd >/dev/null || missing+=(trace-cmd)
command -v stress-ng >/dev/null || missing+=(stress-ng)
[ -x /usr/bin/chromium ] || missing+=(chromium)
# Gradio encodes the live player's streamed audio with ffmpeg (docs/streaming.md)
command -v ffmpeg >/dev/null || missing+=(ffmpeg)
command -v setpriv >/dev/null || missing+=(util-linux)
command -v promtool >/dev/null || missing+=(prometheus)  # the alert rules' tests, the fleet tests' server
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)  # the reverse proxy of the fleet tests
# CJK glyphs, so the browser screenshots (test-artifacts/) show the Chinese labels
[ -e /usr/share/fonts/truetype/wqy/wqy-zenhei.ttc ] || missing+=(fonts-wqy-zenhei)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "[setup] apt-get install ${missing[*]}" >&2
        apt-get update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
    else
        echo "[setup] warning: missing ${missing[*]}; tests that need them will be skipped" >&2
    fi
fi
ensure_tracefs
exec .venv/bin/python -m pytest "$@"
