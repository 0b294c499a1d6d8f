"""One naming everywhere: the Scheduling tab's thread table names threads by role (tts-synth,
torch-intra-N, web-loop, web-worker, trace-aux) as the clip's breakdown does, instead of listing
every thread as `python`. On the real session server."""
from __future__ import annotations


def test_scheduling_tab_names_threads_as_the_clip_does(server, client):
    out = client.predict(text="Who is who.", api_name="/synthesize")
    bd = out[-1]["breakdown"]
    clip = {t["tid"]: (t["comm"], t["role"]) for t in bd["threads"] if t.get("role")}
    assert {"synthesis", "web-loop"} <= {r for _, r in clip.values()}, clip
    md, table, rb = client.predict(api_name="/scheduling_state")
    assert table["headers"][:3] == ["tid", "thread", "role"]
    rows = {r[0]: r for r in table["data"]}
    for tid, (comm, role) in clip.items():
        if tid in rows:  # alive still (Gradio may retire a worker)
            assert rows[tid][1] == comm and rows[tid][2] == role, (tid, comm, role, rows[tid])
    named = [r for r in table["data"] if r[2]]
    assert {"synthesis", "web-loop", "trace-aux"} <= {r[2] for r in named}
    assert all(r[1] != "python" for r in named)  # a named thread carries its role's name in the kernel
    assert {t["tid"]: t["role"] for t in rb["threads"] if t["role"]} == {r[0]: r[2] for r in named}
