"""A streaming client of the launcher: /synthesize_stream through gradio_client, timed where the
user sits. Standalone (stdlib + gradio_client, 1.13 or 2.x), so the tests run it in-process or
inside an IndexTTS env's own interpreter, and the benchmark imports it.

    python tests/stream_client.py URL '{"text": "...", "max_tokens_seg": 20}' [prompt.wav]

prints one line `RESULT {json}`: first_s (submit -> the first segment's wav on this client's disk,
playable), complete_s (submit -> the complete clip's update), segments (their paths, in order),
segment_at_s (when each arrived), monotonic_first (time.monotonic() of the first, to set against
the server's trace clock on the same host), final (the complete clip's JSON output).
"""
from __future__ import annotations

import json
import sys
import time


def stream(client, fields: dict, api_name: str = "/synthesize_stream") -> dict:
    t0 = time.monotonic()
    job = client.submit(api_name=api_name, **fields)
    out = {"segments": [], "segment_at_s": [], "first_s": None, "monotonic_first": None, "audio_s": None}
    last = None
    for up in job:  # each update as it arrives (its files downloaded first: playable on disk)
        now = time.monotonic()
        seg = up[0] if isinstance(up[0], str) and up[0].endswith(".wav") else None
        if seg:
            out["segments"].append(seg)
            out["segment_at_s"].append(now - t0)
            if out["first_s"] is None:
                out["first_s"], out["monotonic_first"] = now - t0, now
        if out["audio_s"] is None and isinstance(up[1], str) and up[1].endswith(".wav"):
            out["audio_s"] = now - t0  # the complete clip's audio (the panel's first step)
        last = up
    final = job.result()
    out["complete_s"] = time.monotonic() - t0
    if last is None:
        last = final
    out["final"] = final[-1] if isinstance(final[-1], dict) else None
    out["clip"] = final[1]
    return out


if __name__ == "__main__":
    from gradio_client import Client, handle_file
    fields = json.loads(sys.argv[2])
    if len(sys.argv) > 3:
        fields["spk"] = handle_file(sys.argv[3])
    res = stream(Client(sys.argv[1], verbose=False), fields)
    print("RESULT " + json.dumps(res, default=str))
