"""Load on a real server: 8 concurrent API clients, then 100 sequential traced requests.

Pass: 0 failures; every clip has a full breakdown, no attachment until asked, and then (an
operator's download) its attachment; no trace instance and no file descriptor leaked; RSS growth
over the 100 requests below RSS_GROWTH_LIMIT_MB.
"""
from __future__ import annotations

import json
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from gradio_client import Client

from tests.conftest import TRACEFS, Server, our_instances
from tests.proc_state import fd_count, rss_kb, tracefs_fds
from tracing.instances import SPARES

CLIENTS = 8
PER_CLIENT = 2
SEQUENTIAL = 100
# Measured here (builtin engine, 2 CPUs): +35 MB over the 100 after a 10-request warm-up; a server
# followed for 200 requests rose from 431 to ~540 MB by request 80-120 and then stayed within
# 534-553 MB (allocator arenas and caches settling, not a per-request leak). 96 MB leaves margin
# for that noise and still fails a leak of ~0.6 MB per request or more (e.g. every request's
# capture kept: the raw trace text alone is 0.3-2 MB).
RSS_GROWTH_LIMIT_MB = 96
FD_MARGIN = 6  # keep-alive sockets from the clients may come and go


TOKEN = "load-test-operator-token-0123456789"


def operator(url: str) -> Client:
    return Client(url, verbose=False, headers={"X-Operator-Token": TOKEN})


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("load")
    (tmp / "token").write_text(TOKEN + "\n")
    srv = Server(tmp, "--keep-clips", "500", "--operator-token-file", str(tmp / "token")).start()
    yield srv
    pid = srv.proc.pid
    srv.stop()
    assert srv.proc.returncode == 0
    assert our_instances(pid, standby_ok=False) == []


def settled(pid: int, timeout: float = 5.0) -> list[str]:
    """Recording instances once the aux thread finished preparing the next window."""
    deadline = time.monotonic() + timeout
    while (left := our_instances(pid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def check_clips(server, ids: list[str]) -> None:
    """Each clip complete; its attachment built only when an operator downloads it."""
    op = operator(server.url)
    for rid in ids:
        d = server.outputs / "clips" / rid
        rec = json.loads((d / "record.json").read_text())
        bd = rec["breakdown"]
        assert rec["tracing"] and bd["mode"] == "full" and bd["totals"]["on_cpu_s"] > 0, rid
        assert [s["name"] for s in bd["stages"]] == rec["stages"], rid
        # not paid for yet: the pages kept, with the window's text or what writes it (KernelText)
        meta = json.loads((d / ".trace-meta.json").read_text())
        assert not (d / "trace.zip").exists() and ((d / ".trace.txt").is_file() or "text" in meta), rid
        assert Path(op.predict(rid, api_name="/download")).stat().st_size > 0
        with zipfile.ZipFile(d / "trace.zip") as z:
            assert {"trace.txt", "summary.json", "report.txt"} <= set(z.namelist()), rid
            assert z.read("trace.txt").startswith(b"# tracer:"), rid
            assert json.loads(z.read("summary.json"))["request_id"] == rid
        assert (d / "audio.wav").stat().st_size > 1000 and (d / "timeline.png").is_file()


def test_eight_concurrent_clients(loaded):
    def one_client(i):
        c = Client(loaded.url, verbose=False)
        return [c.predict(text=f"Client {i}, request {k}.", api_name="/synthesize")[1] for k in range(PER_CLIENT)]

    with ThreadPoolExecutor(CLIENTS) as ex:
        results = list(ex.map(one_client, range(CLIENTS)))  # re-raises any failure
    ids = [rid for r in results for rid in r]
    assert len(set(ids)) == CLIENTS * PER_CLIENT
    check_clips(loaded, ids)
    assert settled(loaded.proc.pid) == []


@pytest.mark.slow
def test_hundred_sequential_traced_requests(loaded):
    pid = loaded.proc.pid
    client = Client(loaded.url, verbose=False)
    for i in range(10):  # warm-up batch: caches, allocator arenas, client connections
        client.predict(text=f"Warm up {i}.", api_name="/synthesize")
    assert settled(pid) == []
    rss0, fds0 = rss_kb(pid), fd_count(pid)
    ids, failures = [], []
    for i in range(SEQUENTIAL):
        try:
            ids.append(client.predict(text=f"Sequential request number {i}.", api_name="/synthesize")[1])
        except Exception as e:  # count, then fail below with the first reasons
            failures.append(f"{i}: {e}")
    assert failures == [], failures[:3]
    assert settled(pid) == []
    rss1, fds1 = rss_kb(pid), fd_count(pid)
    growth_mb = (rss1 - rss0) / 1024
    print(f"\nRSS {rss0 / 1024:.1f} -> {rss1 / 1024:.1f} MB (+{growth_mb:.1f} MB over {SEQUENTIAL} requests); "
          f"fds {fds0} -> {fds1}")
    assert len(set(ids)) == SEQUENTIAL
    check_clips(loaded, ids)
    assert growth_mb < RSS_GROWTH_LIMIT_MB, f"RSS grew {growth_mb:.1f} MB over {SEQUENTIAL} requests"
    assert fds1 <= fds0 + FD_MARGIN, f"fds {fds0} -> {fds1}"
    # the standby window and the spares (tracing/instances.py) hold their trace_marker, nothing else
    mine = [n.name for n in (TRACEFS / "instances").iterdir() if n.name.startswith(f"ittsw-{pid}-")]
    assert len(mine) <= 1 + SPARES and tracefs_fds(pid, mine) == []
    assert len(tracefs_fds(pid)) <= len(mine)
