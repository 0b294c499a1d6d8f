#!/usr/bin/env bash
# Launcher: bootstrap .venv on first run, mount tracefs if needed, then start the web UI.
# Every flag is passed to webui.py (IndexTTS2's flags plus ours: see README or --help).
# The launch preset (--preset/--cpus/--nice/--policy/--rt-priority) is applied by webui.py
# before any worker thread exists, with taskset/nice/chrt semantics.
set -euo pipefail
cd "$(dirname "$0")"
source ./bootstrap.sh
bootstrap_venv requirements.txt
ensure_tracefs
exec .venv/bin/python webui.py "$@"
