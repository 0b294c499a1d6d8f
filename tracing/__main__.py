"""`python -m tracing <command>`: subcommands over argparse (others add snapshot / diff)."""
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
    from .snapshot import register_cli  # snapshot + diff (tracing/snapshot.py, tracing/diff.py)
    register_cli(sub)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
