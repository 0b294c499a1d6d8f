"""`python -m tracing doctor`: what tracefs can do here. `python -m tracing analyze PATH`: a clip's
breakdown again from its attachment (tracing/offline.py). The snapshot and diff commands run
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


def cmd_analyze(args) -> int:
    from .offline import OfflineError, analyse, load_input
    from .report import render_report
    try:
        bd, found, meta = analyse(load_input(args.path, args.profile), args.pid)
    except (OfflineError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"breakdown": bd, "findings": found, "meta": meta}, indent=2, default=str))
    else:
        print(render_report(bd, found, meta), end="")
    return 0


ANALYZE_EXAMPLES = """examples:
  python -m tracing analyze outputs/clips/<id>/trace.zip          the clip's report again
  python -m tracing analyze trace.zip --json > clip.json          the breakdown as JSON
  python -m tracing analyze trace.txt --pid 4242 --profile p.json  a bare trace + a Kineto profile
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tracing", description="Per-request kernel trace windows.")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("doctor", help="print what tracefs can do here (the UI shows the same)")
    d.add_argument("--root", default=None, help="tracefs path (default: find or mount it)")
    d.add_argument("--json", action="store_true", help="machine-readable output")
    d.set_defaults(func=cmd_doctor)
    a = sub.add_parser("analyze", help="a clip's breakdown again, from its attachment or a trace",
                       epilog=ANALYZE_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    a.add_argument("path", help="clip attachment (trace.zip), trace.txt or trace.dat")
    a.add_argument("--profile", default=None, metavar="PROFILE.json",
                   help="a Kineto/torch.profiler JSON to join (default: the attachment's device_profile.json)")
    a.add_argument("--pid", type=int, default=None, help="the traced process (default: summary.json, or the "
                                                         "tgid of the stage markers)")
    a.add_argument("--json", action="store_true", help="breakdown + findings as JSON")
    a.set_defaults(func=cmd_analyze)
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
