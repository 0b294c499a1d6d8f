"""Time to first sound where the user sits: streamed segments through the real server, traced vs not.

For each engine it starts webui.py (a real Gradio server) and sends pairs of requests to
/synthesize_stream with gradio_client (tests/stream_client.py), one with the kernel trace on and
one with it off, alternating which goes first. The text has at least four segments (the default:
30 short sentences, 4 segments at upstream's default 120 tokens per segment; --short: 4 sentences
at the API's minimum of 20 tokens per segment, where the builtin engine's segments take ~0.1 s and
the fixed cost of delivering an update dominates; the server's record is checked). Per
request, on the client's clock (the server is on the same machine):
- first sound: submit() -> the first segment's wav on the client's disk (playable);
- complete: submit() -> the update carrying the complete clip's audio (what a client of the
  non-streaming /synthesize waits for before it can play anything);
- the server's own first_sound_s and wall_s (clip record).
Printed per engine, each a median with a bootstrap 95% interval (5000 resamples):
  first-sound/complete ratio <median> [<lo>, <hi>]          per request, all requests
  first-sound traced/untraced ratio <median> [<lo>, <hi>]   per pair
Goals (issue 23): <= 0.35 and <= 1.05. Pairwise ratios cancel most of a shared machine's drift.
This is the API client's first sound: the page's live player adds Gradio's AAC encoding and HLS
on top (docs/streaming.md; tests/e2e/test_live_playback.py shows it playing before the clip).

    .venv/bin/python benchmarks/first_sound.py [--pairs 10] [--engines builtin,replica]
        [--max-tokens-seg 120] [--text "..." | --short] [--replica-generation JSON] [--json out.json]

Example (docs/streaming.md's figures):
    flock /tmp/itts-bench.lock .venv/bin/python benchmarks/first_sound.py --pairs 10 \\
        --replica-generation '{"max_mel_tokens": 60, "num_beams": 1}'
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.tracing_overhead import Server, bootstrap_median  # noqa: E402
from tests.stream_client import stream  # noqa: E402

# 30 short sentences (~1850 characters): 4 segments at upstream's default of 120 tokens per segment
TEXT = " ".join(f"Part {i} of the text plays while the rest is still being made." for i in range(1, 31))
# four sentences of ~14 tokens: 4 segments at the API's minimum of 20 tokens (--max-tokens-seg 20)
SHORT_TEXT = ("The first sentence is long enough to fill a segment on its own today. "
              "The second sentence is also long enough to stand alone as a segment. "
              "A third sentence follows here and it is as long as the other two. "
              "The fourth and last sentence closes the text and ends the clip now.")
MIN_SEGMENTS = 4


def one_request(client, text: str, traced: bool, tokens: int, gen: dict) -> dict:
    fields = {"text": text, "trace": traced, "max_tokens_seg": tokens, **gen}
    r = stream(client, fields)
    final = r["final"] or {}
    segs = final.get("segment_s") or []
    if len(segs) < MIN_SEGMENTS:
        raise SystemExit(f"the text made {len(segs)} segments; the benchmark needs >= {MIN_SEGMENTS}: "
                         f"lower --max-tokens-seg or lengthen --text")
    return {"traced": traced, "first_s": r["first_s"], "complete_s": r["audio_s"], "total_s": r["complete_s"],
            "server_first_s": final.get("first_sound_s"), "segments": len(segs),
            "mode": (final.get("breakdown") or {}).get("mode")}


def measure(engine: str, pairs: int, text: str, tokens: int, tmp: Path, gen: dict,
            server_args: list[str] = ()) -> dict:
    from gradio_client import Client
    srv = Server(tmp / f"outputs-{engine}", engine, None, list(server_args))
    try:
        client = Client(srv.url, verbose=False)
        for traced in (True, False):  # warm both paths, untimed
            one_request(client, text, traced, tokens, gen)
        rows = []
        for i in range(pairs):
            order = (True, False) if i % 2 == 0 else (False, True)
            rows.append({r["traced"]: r for r in (one_request(client, text, t, tokens, gen) for t in order)})
            print(f"  {engine} pair {i + 1}/{pairs}: first sound {rows[-1][True]['first_s'] * 1000:.0f} / "
                  f"{rows[-1][False]['first_s'] * 1000:.0f} ms, complete {rows[-1][True]['complete_s'] * 1000:.0f}"
                  f" / {rows[-1][False]['complete_s'] * 1000:.0f} ms", file=sys.stderr, flush=True)
    finally:
        srv.stop()
    allr = [r for p in rows for r in p.values()]
    on, off = [p[True] for p in rows], [p[False] for p in rows]
    med = lambda key, rs: float(np.median([r[key] for r in rs]))  # noqa: E731
    return {"engine": engine, "pairs": pairs, "mode": on[0]["mode"], "segments": on[0]["segments"],
            "first_complete": bootstrap_median([r["first_s"] / r["complete_s"] for r in allr]),
            "traced_untraced": bootstrap_median([a["first_s"] / b["first_s"] for a, b in zip(on, off)]),
            "first_on_s": med("first_s", on), "first_off_s": med("first_s", off),
            "complete_on_s": med("complete_s", on), "complete_off_s": med("complete_s", off),
            "server_first_on_s": med("server_first_s", on), "server_first_off_s": med("server_first_s", off),
            "rows": rows}


def _ci(t) -> str:
    return f"{t[0]:.3f} [{t[1]:.3f}, {t[2]:.3f}]"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                 epilog="example: flock /tmp/itts-bench.lock .venv/bin/python benchmarks/first_sound.py "
                                        "--pairs 10 --replica-generation '{\"max_mel_tokens\": 60, \"num_beams\": 1}'")
    ap.add_argument("--pairs", type=int, default=10)
    ap.add_argument("--engines", default="builtin,replica")
    ap.add_argument("--text", default=TEXT)
    ap.add_argument("--short", action="store_true", help="the 4-sentence text at 20 tokens per segment instead")
    ap.add_argument("--max-tokens-seg", type=int, default=120, help="segment budget (upstream's default 120)")
    ap.add_argument("--replica-generation", default=None, metavar="JSON",
                    help='generation arguments for the replica, e.g. \'{"max_mel_tokens": 60, "num_beams": 1}\'')
    ap.add_argument("--server-args", default="", help="more webui.py flags")
    ap.add_argument("--json", default=None, help="also write every request's figures here")
    args = ap.parse_args(argv)
    if args.pairs < 2:
        ap.error("--pairs must be at least 2")
    if args.short:
        args.text, args.max_tokens_seg = SHORT_TEXT, 20
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="first-sound-") as tmp:
        rgen = json.loads(args.replica_generation) if args.replica_generation else {}
        results = [measure(e, args.pairs, args.text, args.max_tokens_seg, Path(tmp), rgen if e == "replica" else {},
                           args.server_args.split()) for e in args.engines.split(",")]
    print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; after: "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    for r in results:
        print(f"{r['engine']} ({r['pairs']} pairs, {r['segments']} segments, trace mode {r['mode']}):")
        print(f"first-sound/complete ratio {_ci(r['first_complete'])}")
        print(f"first-sound traced/untraced ratio {_ci(r['traced_untraced'])}")
        print(f"  medians: first sound {r['first_on_s'] * 1000:.0f} ms traced / {r['first_off_s'] * 1000:.0f} ms "
              f"untraced (server: {r['server_first_on_s'] * 1000:.0f} / {r['server_first_off_s'] * 1000:.0f} ms); "
              f"complete clip {r['complete_on_s'] * 1000:.0f} / {r['complete_off_s'] * 1000:.0f} ms")
    ok = all(r["first_complete"][0] <= 0.35 and r["traced_untraced"][0] <= 1.05 for r in results)
    print(f"goals: first-sound/complete <= 0.35, traced/untraced <= 1.05 -> {'met' if ok else 'NOT met'}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
