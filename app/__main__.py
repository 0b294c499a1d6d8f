"""`python -m app <command>`: the commands that run requests (snapshot, advise) and compare runs (diff).
`python -m tracing doctor` stays with the tracing room: it only reads tracefs."""
from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m app", description="Pressure snapshots of the launcher.")
    sub = p.add_subparsers(dest="command", required=True)
    from app.advisor import register_cli as advise_cli
    from app.snapshot_runs import register_cli
    register_cli(sub)
    advise_cli(sub)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
