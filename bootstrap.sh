# Sourced by start_app.sh and run_tests.sh: create .venv with Python 3.11 on first run and keep it
# in step with the pinned requirements (re-installs only when the requirements file changes).
# Or, with PYTHON= naming the interpreter of an existing environment (an IndexTTS venv), use that
# environment as it is plus an overlay of what it lacks (use_user_env; docs/indextts.md).

# True when $1 is an interpreter of an environment someone built (a venv, or one that already has
# gradio or indextts) rather than a bare Python to create our .venv with.
is_user_env() {
    "$1" -c 'import sys, importlib.util as u
sys.exit(0 if sys.prefix != sys.base_prefix or u.find_spec("gradio") or u.find_spec("indextts") else 1)' 2>/dev/null
}

# Sets LAUNCH_PY to the environment's interpreter and prepends the overlay to PYTHONPATH, after
# installing into the overlay whatever of requirements-userenv.txt the environment lacks. Never
# changes a version the environment has: pip gets the environment's own versions as constraints.
use_user_env() {
    local py="$1"
    local here; here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
    local req="$here/requirements-userenv.txt"
    "$py" -c 'import sys; sys.exit(sys.version_info[:2] < (3, 10))' \
        || { echo "error: $py is Python $("$py" -c 'import sys; print(sys.version.split()[0])'); the launcher needs 3.10 or newer" >&2; return 1; }
    local ov sites; ov="$("$py" "$here/userenv.py" overlay)" && sites="$("$py" "$here/userenv.py" sitedirs)" || return 1
    local want; want="$("$py" "$here/userenv.py" stamp "$req")" || return 1
    if [ ! -f "$ov/.stamp" ] || [ "$(cat "$ov/.stamp")" != "$want" ]; then
        mkdir -p "$ov"
        local lock; exec {lock}>"$ov/.lock"; flock "$lock"  # two launches at once: one installs
        if [ ! -f "$ov/.stamp" ] || [ "$(cat "$ov/.stamp")" != "$want" ]; then
            _overlay_install "$py" "$here" "$req" "$ov" "$sites" || { exec {lock}>&-; return 1; }
            echo "$want" > "$ov/.stamp"
        fi
        exec {lock}>&-
    fi
    LAUNCH_PY="$py"
    export PYTHONPATH="$sites${PYTHONPATH:+:$PYTHONPATH}"
}

_overlay_install() {
    local py="$1" here="$2" req="$3" ov="$4" sites="$5"
    local pip; pip="$("$py" "$here/userenv.py" pip)"
    [ -n "$pip" ] || { echo "error: $py has neither pip nor ensurepip's bundled pip; install what requirements-userenv.txt lists yourself" >&2; return 1; }
    # pip sees the env, the overlay and the user's own PYTHONPATH (kept at run time too, below),
    # so it installs only what all of them lack
    local pp="$sites${PYTHONPATH:+:$PYTHONPATH}"
    [ "$pip" = "-m pip" ] || pp="$pip:$sites"  # pip run from ensurepip's wheel
    local need; need="$(PYTHONPATH="$pp" "$py" "$here/userenv.py" missing "$req")" || return 1
    [ -n "$need" ] || return 0  # everything there: no pip run, no network
    local -a specs; mapfile -t specs <<<"$need"
    echo "[setup] adding to $ov what $py lacks: ${specs[*]} (the env itself is not changed)" >&2
    "$py" "$here/userenv.py" constraints "$ov/constraints.txt" || return 1
    local log="$ov/pip.log"
    if PYTHONPATH="$pp" "$py" -m pip install --disable-pip-version-check --prefix "$ov" \
            -c "$ov/constraints.txt" "${specs[@]}" >"$log" 2>&1; then
        return 0
    fi
    local pkgs; pkgs="$(grep -oE "requested \(constraint\) [A-Za-z0-9_.-]+" "$log" | awk '{print $3}' | sort -u | paste -sd, -)"
    if [ -n "$pkgs" ]; then
        echo "error: cannot add the launcher's packages to $py without changing its $pkgs (the environment's own version is kept; pip's conflict report:)" >&2
        sed -n '/conflict is caused by/,/^$/p' "$log" | sed 's/^/       /' >&2
    else
        cat "$log" >&2
        echo "error: pip could not add ${specs[*]} to $py's overlay (output above)." >&2
    fi
    echo "       full pip log: $log; the environment's versions (kept as constraints): $ov/constraints.txt" >&2
    return 1
}

bootstrap_venv() {
    local req="$1"  # requirements file to satisfy
    LAUNCH_PY="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/.venv/bin/python"
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
