# Sourced by start_app.sh and run_tests.sh: create .venv with Python 3.11 on first run and keep it
# in step with the pinned requirements (re-installs only when the requirements file changes).
bootstrap_venv() {
    local req="$1"  # requirements file to satisfy
    local here; here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
    local venv="$here/.venv"
    local py="${PYTHON:-}"
    if [ -z "$py" ]; then
        for cand in python3.11 python3; do
            if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
                py="$cand"; break
            fi
        done
    fi
    [ -n "$py" ] || { echo "error: Python 3.11 is required (set PYTHON=/path/to/python3.11)" >&2; return 1; }
    if [ ! -x "$venv/bin/python" ]; then
        echo "[setup] creating $venv with $py" >&2
        "$py" -m venv "$venv" || return 1
    fi
    local stamp="$venv/.installed-$(basename "$req")"
    local sum; sum="$(cat "$here/requirements.txt" "$here/$req" | sha256sum | cut -d' ' -f1)"
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$sum" ]; then
        echo "[setup] installing $req into .venv (first run takes a few minutes)" >&2
        "$venv/bin/pip" install --disable-pip-version-check -q -r "$here/$req" || return 1
        echo "$sum" > "$stamp"
    fi
}

# tracefs is often not mounted on fresh machines; mount it when we may (root), else the app runs
# in its labelled degraded (schedstat) mode.
ensure_tracefs() {
    if [ -d /sys/kernel/tracing ] && [ ! -e /sys/kernel/tracing/trace ] && [ "$(id -u)" = 0 ]; then
        mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null \
            && echo "[setup] mounted tracefs at /sys/kernel/tracing" >&2
    fi
    return 0
}
