"""metrics.py: observe() on hand-made records, and a real scrape of /metrics after one request."""
from __future__ import annotations

import re
import types
import urllib.request

import pytest

from breakdown_samples import contended, schedstat
from app.metrics import Metrics, install
from app.queue_time import QueueClock


def _value(body: str, name: str, **labels) -> float | None:
    for line in body.splitlines():
        if not line.startswith(name + "{"):
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if all(got.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_observe_fills_every_family():
    m = Metrics()
    rec = {"engine": "builtin", "preset": {"preset": "pinned"}, "wall_s": 1.2, "breakdown": contended(),
           "findings": [{"kind": "cpu_contention", "severity": "warning", "message": "x"}]}
    rec["breakdown"]["lost_events"]["total"] = 7
    m.observe(rec)
    m.observe({"engine": "builtin", "preset": {"preset": "default"}, "wall_s": 0.5, "breakdown": None})
    m.observe({"engine": "builtin", "preset": {"preset": "default"}, "wall_s": 0.4, "breakdown": schedstat()})
    body = m.exposition().decode()
    assert _value(body, "itts_request_wall_seconds_count", preset="pinned", engine="builtin") == 1
    assert _value(body, "itts_request_wall_seconds_count", preset="default", engine="builtin") == 2
    assert _value(body, "itts_breakdown_seconds_sum", component="runqueue_wait", preset="pinned") == pytest.approx(0.42)
    assert _value(body, "itts_breakdown_seconds_bucket", component="runqueue_wait", preset="pinned", le="0.25") == 0
    assert _value(body, "itts_breakdown_seconds_bucket", component="runqueue_wait", preset="pinned", le="0.5") == 1
    assert _value(body, "itts_stage_seconds_count", stage="vocoder", component="wall", preset="pinned") == 1
    assert _value(body, "itts_lost_events_total", preset="pinned", engine="builtin") == 7
    assert _value(body, "itts_blocker_seconds_total", comm="noisyneighbour", preset="pinned") == pytest.approx(0.4)
    assert _value(body, "itts_blocker_seconds_total", comm="sshd", preset="pinned") == pytest.approx(0.001)
    assert "itts_time_to_audio_seconds_count{" not in body  # no queue time on these records: not guessed
    assert _value(body, "itts_findings_total", kind="cpu_contention", severity="warning") == 1
    assert _value(body, "itts_requests_total", engine="builtin", status="ok") == 3
    m.sync_failures("builtin", 2)
    m.sync_failures("builtin", 2)  # idempotent: counts the service's failures once
    assert _value(m.exposition().decode(), "itts_requests_total", status="error") == 2


def test_blocker_names_stay_a_bounded_label_set():
    from app.metrics import MAX_COMMS
    m = Metrics()
    names = ["kworker/u4:2", "kworker/1:0H", "ksoftirqd/1", "torch-intra-3", "python3", "stress-ng-cpu"]
    assert [m._comm(c) for c in names] == ["kworker", "kworker", "ksoftirqd", "torch-intra", "python3",
                                           "stress-ng-cpu"]
    for i in range(3 * MAX_COMMS):  # a local user spawning processes with fresh names
        m._comm(f"spam{i}x")
    assert m._comm("brand-new-name") == "other" and m._comm("kworker/0:1") == "kworker"
    m.observe({"engine": "builtin", "preset": {"preset": "default"}, "wall_s": 0.3, "queue_s": 0.2})
    assert _value(m.exposition().decode(), "itts_time_to_audio_seconds_sum", preset="default") == pytest.approx(0.5)


def test_install_on_a_running_gradio_app():
    """The wiring webui.py uses: launch(prevent_thread_lock=True), then install()."""
    import gradio as gr
    svc = types.SimpleNamespace(engine=types.SimpleNamespace(name="builtin"), failures=1, listeners=[], busy=False,
                                queue=QueueClock())
    ctx = types.SimpleNamespace(service=svc)
    with gr.Blocks() as demo:
        t = gr.Textbox()
        gr.Button().click(lambda x: x, t, t, api_name="echo")
    app, url, _ = demo.launch(server_port=None, prevent_thread_lock=True, quiet=True)
    try:
        m = install(ctx, app)
        assert ctx.metrics is m and svc.listeners == [m.observe]
        svc.listeners[0]({"engine": "builtin", "preset": {"preset": "default"}, "wall_s": 0.3, "queue_s": 1.2,
                          "breakdown": contended()})
        with urllib.request.urlopen(url + "metrics", timeout=10) as r:
            assert r.headers["Content-Type"].startswith("text/plain")
            body = r.read().decode()
        assert _value(body, "itts_request_wall_seconds_count", preset="default", engine="builtin") == 1
        assert _value(body, "itts_queue_seconds_bucket", preset="default", engine="builtin", le="1.0") == 0
        assert _value(body, "itts_queue_seconds_bucket", preset="default", engine="builtin", le="2.5") == 1
        assert _value(body, "itts_requests_total", status="error") == 1
        assert urllib.request.urlopen(url + "config", timeout=10).status == 200  # Gradio still serves
    finally:
        demo.close()


@pytest.mark.slow
def test_scrape_real_server_after_one_request(server, client):
    """webui.py serves /metrics (wired with metrics.install) and counts a real request."""
    client.predict(text="Metrics check.", preset="default", scope="this request only", api_name="/synthesize")
    try:
        body = urllib.request.urlopen(server.url + "metrics", timeout=10).read().decode()
    except urllib.error.HTTPError as e:
        pytest.fail(f"/metrics answered {e.code}: webui.py must call metrics.install(ctx, fastapi_app) "
                    "after app.launch(..., prevent_thread_lock=True)")
    assert _value(body, "itts_request_wall_seconds_count", preset="default") >= 1
    assert _value(body, "itts_breakdown_seconds_count", component="on_cpu", preset="default") >= 1
    assert _value(body, "itts_requests_total", status="ok") >= 1
    assert "itts_stage_seconds_count{" in body


def _plain(body: str, name: str) -> float | None:
    for line in body.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_periodic_series_verdict_and_busy_gauges(tmp_path):
    """The latest verdict of a series (written as the snapshot CLI does) as gauges an alert rule
    can fire on (docs/alerts/snapshots.rules.yml), and the busy gauge the idle gate reads."""
    from app.metrics import SeriesCollector
    from tests.test_series import _write, quiet, stalled
    from tracing.series import Series

    s = Series(tmp_path / "series")
    m = Metrics()
    m.registry.register(SeriesCollector(s.path))
    assert "itts_snapshot_" not in m.exposition().decode()  # no series yet: nothing, not zeros
    s.record(_write(s.path / "a", quiet(1)))
    body = m.exposition().decode()
    assert _value(body, "itts_snapshot_regression", kind="any") == 0 and _plain(body, "itts_snapshot_series_entries") == 1
    s.record(_write(s.path / "b", stalled(2)))
    body = m.exposition().decode()
    assert _value(body, "itts_snapshot_regression", kind="any") == 1
    assert _value(body, "itts_snapshot_regression", kind="tail") == 1
    assert _value(body, "itts_snapshot_metric_regression", preset="default", metric="wall", kind="tail") == 1
    assert _value(body, "itts_snapshot_seconds", preset="default", metric="wall", quantile="0.95", snapshot="latest") > \
        2 * _value(body, "itts_snapshot_seconds", preset="default", metric="wall", quantile="0.95", snapshot="baseline")
    assert _value(body, "itts_snapshot_timestamp_seconds", snapshot="latest") > 1.7e9
    assert _plain(body, "itts_snapshot_idle_wait_seconds") == 1.5
    (s.path / "series.json").write_text("{broken")  # a scrape survives a broken file
    assert "itts_snapshot_" not in m.exposition().decode()

    svc = types.SimpleNamespace(engine=types.SimpleNamespace(name="builtin"), failures=0, listeners=[], busy=True,
                                queue=QueueClock())
    ctx = types.SimpleNamespace(service=svc, args=types.SimpleNamespace(outputs=str(tmp_path), snapshot_series=None))
    fake_app = types.SimpleNamespace(router=types.SimpleNamespace(routes=[]))
    in_gradio = [3]  # requests Gradio holds in its queue (app.ui.compat.queued)
    mi = install(ctx, fake_app, gradio_waiting=lambda: in_gradio[0])
    assert _plain(mi.exposition().decode(), "itts_service_busy") == 1
    svc.busy = False
    assert _plain(mi.exposition().decode(), "itts_service_busy") == 0
    # running / waiting: the service's tickets plus Gradio's queue
    a, b = svc.queue.arrive(), svc.queue.arrive()
    svc.queue.start(a)
    body = mi.exposition().decode()
    assert _plain(body, "itts_requests_running") == 1 and _plain(body, "itts_requests_waiting") == 1 + 3
    svc.queue.finish(a)
    svc.queue.finish(b)
    in_gradio[0] = 0
    body = mi.exposition().decode()
    assert _plain(body, "itts_requests_running") == 0 and _plain(body, "itts_requests_waiting") == 0


def test_first_sound_histograms():
    m = Metrics()
    bd = contended()
    bd["first_sound"] = {"at_s": 1.0, "before": {"on_cpu_s": 0.2, "runqueue_wait_s": 0.3, "blocked_io_s": 0.0},
                         "after": {}}
    m.observe({"engine": "replica", "preset": {"preset": "pinned"}, "wall_s": 1.2, "first_sound_s": 0.3,
               "breakdown": bd})
    m.observe({"engine": "replica", "preset": {"preset": "pinned"}, "wall_s": 1.0, "breakdown": None})  # older record
    body = m.exposition().decode()
    assert _value(body, "itts_first_sound_seconds_count", preset="pinned", engine="replica") == 1
    assert _value(body, "itts_first_sound_seconds_bucket", preset="pinned", le="0.25") == 0
    assert _value(body, "itts_first_sound_seconds_bucket", preset="pinned", le="0.5") == 1
    assert _value(body, "itts_first_sound_breakdown_seconds_sum", component="runqueue_wait",
                  preset="pinned") == pytest.approx(0.3)


def test_requests_refused_by_the_handler_count_as_errors(server, client):
    """Empty text is refused by the Synthesize handler before the service sees it (a streamed
    request must not start its worker): still a failed request on /metrics, once per request,
    on the plain and the streamed endpoint (the fleet test found it missing). What Gradio itself
refuses before any handler runs (a value outside a Radio's choices) is not ours to count."""
    from gradio_client.exceptions import AppError

    def errors() -> float:
        with urllib.request.urlopen(server.url + "metrics", timeout=20) as r:
            return sum(v for v in [_value(r.read().decode(), "itts_requests_total", status="error")] if v)

    before = errors()
    for api in ("/synthesize", "/synthesize_stream"):
        with pytest.raises(AppError):
            client.predict(text="", api_name=api)
    assert errors() - before == 2
