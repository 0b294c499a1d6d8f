"""`python -m tracing doctor`: what tracefs can do here. The snapshot and diff commands run
requests, so they live in the wiring wing: `python -m app snapshot | diff` (app/snapshot_runs.py)."""
from __future__ import annotations

import argparse
import json
import sys

from . import tracefs


def cmd_doctor(args) -> int:
    cap = tracefs.probe(args.root)
    print(json.dumps(cap.to_dict(), indent=2) if args.json else cap.summary())
    return 0 if cap.mode == "full" else 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tracing", description="Per-request kernel trace windows.")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("doctor", help="print what tracefs can do here (the UI shows the same)")
    d.add_argument("--root", default=None, help="tracefs path (default: find or mount it)")
    d.add_argument("--json", action="store_true", help="machine-readable output")
    d.set_defaults(func=cmd_doctor)
    for old in ("snapshot", "diff"):  # moved: say where to go instead of argparse's "invalid choice"
        m = sub.add_parser(old, help=f"moved: python -m app {old}", add_help=False)
        m.add_argument("rest", nargs=argparse.REMAINDER)
        m.set_defaults(func=lambda args, old=old: _moved(old))
    return p


def _moved(cmd: str) -> int:
    print(f"error: `python -m tracing {cmd}` moved to `python -m app {cmd}` (same arguments).", file=sys.stderr)
    return 2


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
