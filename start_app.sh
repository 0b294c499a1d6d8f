#!/usr/bin/env bash
# Launcher: bootstrap .venv on first run, mount tracefs if needed, then start the web UI.
# PYTHON=/path/to/index-tts/.venv/bin/python runs it in that environment instead (see docs/indextts.md).
# Every flag is passed to webui.py (IndexTTS2's flags plus ours: see docs/flags-and-engines.md or --help).
# The launch preset (--preset/--cpus/--nice/--policy/--rt-priority) is applied by webui.py
# before any worker thread exists, with taskset/nice/chrt semantics.
set -euo pipefail
cd "$(dirname "$0")"
source ./bootstrap.sh
if [ -n "${PYTHON:-}" ] && is_user_env "$PYTHON"; then
    use_user_env "$PYTHON"        # an existing env (e.g. IndexTTS's .venv): used as is + an overlay
else
    bootstrap_venv requirements.txt
fi
ensure_tracefs
exec "$LAUNCH_PY" webui.py "$@"
