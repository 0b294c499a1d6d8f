"""Queue time apart from synthesis (app/queue_time.py): the counting rule on a fake clock, the
service with requests racing for its lock, and the real server where the waiting happens in
Gradio's queue (or at the service's lock, where the Synthesize handlers, 4 at once, wait for the
one synthesis at a time) before the synthesis starts."""
from __future__ import annotations

import json
import re
import threading
import time
import urllib.request
from types import SimpleNamespace

from app.queue_time import ARRIVAL_KEY, ArrivalStamp, QueueClock, arrival_of, queue_text


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


# ------------------------------------------------------------------------------ pure rule ----
def test_queue_time_and_requests_ahead_on_a_fake_clock():
    c = Clock()
    c.t = 9.0  # the stamps below are in the past
    q = QueueClock(clock=c)
    a = q.arrive(0.0)
    assert (q.waiting, q.running) == (1, 0)
    assert q.start(a, 0.0) == (0.0, 0)
    assert (q.waiting, q.running) == (0, 1)
    b, cc = q.arrive(1.0), q.arrive(2.0)
    q.finish(a, 3.0)
    assert q.start(b, 3.0) == (2.0, 1)  # waited 2 s behind A
    q.finish(b, 6.0)
    assert q.start(cc, 6.0) == (4.0, 2)  # behind A (still in at 2.0) and B
    q.finish(cc, 7.0)
    c.t = 10.0
    d = q.arrive()  # no stamp: arrival is now
    assert q.start(d, 10.5) == (0.5, 0)  # everyone before it had left
    q.finish(d, 11.0)
    # F overtakes E at the lock: E waited behind F, F behind nobody
    c.t = 30.0
    e, f = q.arrive(12.0), q.arrive(12.5)
    assert q.start(f, 13.0) == (0.5, 0)
    q.finish(f, 14.0)
    assert q.start(e, 14.0) == (2.0, 1)
    q.finish(e, 15.0)
    assert (q.waiting, q.running) == (0, 0)
    # a request that fails before it starts leaves the waiting count; finish is idempotent
    g = q.arrive(16.0)
    q.finish(g)
    q.finish(g)
    assert (q.waiting, q.running) == (0, 0)
    # an arrival stamp later than the clock (another clock) counts as now
    c.t = 40.0
    assert q.arrive(99.0).arrived == 40.0


def test_queue_text_and_arrival_of():
    assert queue_text(1.23, 2) == "waited 1.2 s behind 2 requests"
    assert queue_text(0.8, 1) == "waited 0.8 s behind 1 request"
    assert queue_text(0.004, 0) == "no request ahead (started 4 ms after arrival)"
    assert queue_text(None, None) == ""
    gr_request = SimpleNamespace(request=SimpleNamespace(scope={ARRIVAL_KEY: 12.5}))
    assert arrival_of(gr_request) == 12.5
    assert arrival_of(SimpleNamespace(request=SimpleNamespace(scope={}))) is None
    assert arrival_of(None) is None


# ----------------------------------------------------------------- the service, in process ----
def test_service_requests_racing_for_the_lock(tmp_path):
    from app.service import Service
    from app.store import ClipStore
    from models.base import SynthesisRequest
    from models.builtin import BuiltinEngine
    from tuning.apply import Tuner
    from tuning.presets import load_presets

    svc = Service(BuiltinEngine(), Tuner(load_presets()), ClipStore(tmp_path / "out"), tracing_enabled=False)
    try:
        recs, arrived = [], time.monotonic()

        def one(i):
            recs.append(svc.start(SynthesisRequest(text=f"Number {i}."), arrived=arrived).result())
        threads = [threading.Thread(target=one, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        recs.sort(key=lambda r: r.queue_s)
        assert [r.queue_ahead for r in recs] == [0, 1, 2]
        # each waited at least the synthesis of those served before it (arrival was common)
        assert recs[1].queue_s >= recs[0].wall_s and recs[2].queue_s >= recs[0].wall_s + recs[1].wall_s
        assert all(r.to_dict()["queue_s"] == r.queue_s for r in recs)
        assert (svc.queue.waiting, svc.queue.running) == (0, 0)
    finally:
        svc.close()


# --------------------------------------------------------------------- the real server ----
def scrape(server) -> str:
    with urllib.request.urlopen(server.url + "metrics", timeout=20) as r:
        return r.read().decode()


def metric(text: str, name: str) -> float:
    return sum(float(m.group(1)) for m in re.finditer(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))


def test_waiting_in_gradios_queue_is_queue_time(server, client):
    before = metric(scrape(server), "itts_queue_seconds_count")
    # untraced: cheaper, same queue; long enough (~0.5 s of synthesis each) that a scrape every
    # 50 ms sees the later ones waiting (with "Queued 1." it missed them under load)
    text = " A request long enough to be seen waiting behind the ones before it, at every scrape."
    jobs = [client.submit(text=f"Queued {i}.{text * 3}", trace=False, api_name="/synthesize") for i in range(3)]
    waiting_seen = running_seen = 0.0
    while not all(j.done() for j in jobs):
        text = scrape(server)
        waiting_seen = max(waiting_seen, metric(text, "itts_requests_waiting"))
        running_seen = max(running_seen, metric(text, "itts_requests_running"))
        time.sleep(0.05)
    outs = [j.result()[-1] for j in jobs]  # the JSON output of the complete clip
    by_ahead = sorted((o["queue"]["ahead"], o["queue"]["queue_s"], o["request_id"]) for o in outs)
    assert [a for a, _, _ in by_ahead] == [0, 1, 2], by_ahead
    # the third arrived while the first still held the service (ahead=2), so the second started
    # after it arrived: it waited out the second's whole synthesis, measured from its HTTP arrival
    # (requests wait for the synthesis before theirs, not for its post-processing: issue 25)
    wall_2nd = json.loads((server.outputs / "clips" / by_ahead[1][2] / "record.json").read_text())["wall_s"]
    assert by_ahead[2][1] >= wall_2nd > 0, (by_ahead, wall_2nd)
    assert waiting_seen >= 1 and running_seen >= 1
    text = scrape(server)
    assert metric(text, "itts_queue_seconds_count") == before + 3
    assert metric(text, "itts_requests_waiting") == 0


def test_arrival_stamp_wakes_the_service_on_event_submissions_only():
    """POST .../queue/join and .../call/<api> wake the service (an idle standby re-arms while
    Gradio dispatches); page loads, file fetches and polls do not; a failing wake fails nothing."""
    import asyncio
    woken = []

    async def app(scope, receive, send):
        return None
    stamp = ArrivalStamp(app, wake=lambda: woken.append(1))
    cases = [("POST", "/gradio_api/queue/join", 1), ("POST", "/gradio_api/call/synthesize", 1),
             ("GET", "/gradio_api/queue/data", 0), ("GET", "/gradio_api/call/synthesize/abc", 0),
             ("GET", "/", 0), ("POST", "/gradio_api/upload", 0)]
    for method, path, want in cases:
        woken.clear()
        scope = {"type": "http", "method": method, "path": path}
        asyncio.run(stamp(scope, None, None))
        assert len(woken) == want, (method, path)
        assert ARRIVAL_KEY in scope

    def boom():
        raise RuntimeError("wake failed")
    scope = {"type": "http", "method": "POST", "path": "/gradio_api/queue/join"}
    asyncio.run(ArrivalStamp(app, wake=boom)(scope, None, None))
    assert ARRIVAL_KEY in scope
