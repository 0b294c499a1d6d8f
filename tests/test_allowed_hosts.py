"""The launcher answers only to its own names (app/allowed_hosts.py): the policy as a pure function,
then the real session server asked for its page, /config, the API, a /file= route and /metrics
under a foreign Host (a DNS-rebinding page's requests) and with a foreign Origin (CSRF).
Through a real nginx with the name allowed: tests/test_fleet_proxy.py (marker fleet)."""
from __future__ import annotations

import http.client
import json
import socket
import pytest

from app.allowed_hosts import HostPolicy, own_names

EVIL = "rebind.attacker.example"


def fake_machine():
    return {"gpu-host-3", "gpu-host-3.fleet.example", "10.1.2.3", "fe80::1", "127.0.0.1", "::1"}


# ------------------------------------------------------------------------------ pure policy ----
def test_loopback_bind_answers_to_loopback_names_only():
    p = HostPolicy("127.0.0.1")
    for ok in ("127.0.0.1:7860", "localhost:7860", "LOCALHOST", "[::1]:7860", "localhost.", "127.0.0.1"):
        assert p.allows(ok), ok
    for bad in (f"{EVIL}:7860", EVIL, "127.0.0.1.nip.io", "localhost.attacker.example", "", None, "10.1.2.3"):
        assert not p.allows(bad), bad


def test_wildcard_bind_answers_to_every_name_of_the_machine():
    names = own_names("0.0.0.0", machine=fake_machine)
    assert {"gpu-host-3", "gpu-host-3.fleet.example", "10.1.2.3", "fe80::1", "localhost", "0.0.0.0"} <= names
    assert EVIL not in names
    # the real machine: its host name and an address of it
    real = HostPolicy("0.0.0.0")
    assert real.allows(socket.gethostname()) and real.allows("127.0.0.1") and not real.allows(EVIL)


def test_specific_address_and_allowed_hosts():
    names = own_names("10.1.2.3", ["tts.example.org"], machine=fake_machine)
    assert {"10.1.2.3", "gpu-host-3", "tts.example.org", "localhost"} <= names
    assert "fe80::1" not in names  # another interface's address is not where we listen
    p = HostPolicy("127.0.0.1", ["tts.example.org,grafana.example.org", ".fleet.example"])
    for ok in ("tts.example.org", "grafana.example.org:443", "fleet.example", "a.b.fleet.example"):
        assert p.allows(ok), ok
    for bad in ("example.org", "evilfleet.example", "tts.example.org.evil.example"):
        assert not p.allows(bad), bad
    assert HostPolicy("127.0.0.1", ["*"]).allows(EVIL)
    import argparse
    args = argparse.Namespace(host="127.0.0.1", allowed_hosts=["tts.example.org"], auth="u:p")
    assert not HostPolicy.from_args(args, environ={}).allows("abc123.gradio.live")
    shared = HostPolicy.from_args(args, environ={"GRADIO_SHARE": "true"})
    assert shared.allows("abc123.gradio.live") and shared.allows("tts.example.org") and not shared.allows(EVIL)
    assert "protection is off" in HostPolicy("127.0.0.1", ["*"]).describe()


def scope(host, method="GET", origin=None, kind="http"):
    headers = [(b"host", host.encode())] if host is not None else []
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    return {"type": kind, "method": method, "headers": headers, "path": "/"}


def test_refusal_sentences_name_the_flag():
    p = HostPolicy("127.0.0.1")
    why = p.refusal(scope(f"{EVIL}:7860"))
    assert EVIL in why and f"--allowed-hosts {EVIL}" in why
    assert p.refusal(scope(None)) is not None  # HTTP/1.0 without Host: not ours either
    assert p.refusal(scope("127.0.0.1:7860")) is None
    # a browser's state-changing request from another site (CSRF), and a WebSocket from it
    why = p.refusal(scope("127.0.0.1:7860", "POST", f"http://{EVIL}"))
    assert "Cross-site" in why and f"--allowed-hosts {EVIL}" in why
    assert p.refusal(scope("127.0.0.1:7860", "GET", origin=f"http://{EVIL}", kind="websocket")) is not None
    assert p.refusal(scope("127.0.0.1:7860", "POST", "null")) is not None
    # its own origin, a read from elsewhere (CORS keeps the answer from that page), no Origin (API clients)
    assert p.refusal(scope("127.0.0.1:7860", "POST", "http://127.0.0.1:7860")) is None
    assert p.refusal(scope("127.0.0.1:7860", "POST", "http://localhost:7860")) is None
    assert p.refusal(scope("127.0.0.1:7860", "GET", f"http://{EVIL}")) is None
    assert p.refusal(scope("127.0.0.1:7860", "POST")) is None


# --------------------------------------------------------------------- the real server ----
def request(server, path, host, method="GET", body=None, origin=None):
    c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    headers = {"Host": host}
    if origin:
        headers["Origin"] = origin
    if body is not None:
        headers["Content-Type"] = "application/json"
    c.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


@pytest.fixture(scope="module")
def clip_file(server):
    """A real clip's audio as Gradio's /file= route serves it (its URL path)."""
    from urllib.parse import urlsplit

    from gradio_client import Client
    audio = Client(server.url, download_files=False, verbose=False).predict(
        text="Allowed hosts.", api_name="/synthesize")[0]
    assert "/file=" in audio["url"], audio
    return urlsplit(audio["url"]).path


def test_foreign_host_gets_403_on_every_route(server, clip_file):
    own = f"127.0.0.1:{server.port}"
    join = {"data": ["x"], "fn_index": 0, "session_hash": "rebind0001", "trigger_id": None}
    file_route = clip_file
    routes = [("GET", "/", None), ("GET", "/config", None), ("GET", "/gradio_api/info", None),
              ("POST", "/gradio_api/queue/join", join), ("POST", "/gradio_api/call/synthesize", {"data": ["x"]}),
              ("GET", file_route, None), ("GET", "/metrics", None)]
    for method, path, body in routes:
        status, data = request(server, path, f"{EVIL}:{server.port}", method, body)
        assert status == 403, (path, status, data[:200])
        assert f"--allowed-hosts {EVIL}" in json.loads(data)["detail"], path
    # the same routes under the launcher's own names answer (the 403 above is the Host, not the route)
    for method, path, body in routes[:3] + routes[5:]:
        for host in (own, f"localhost:{server.port}"):
            status, data = request(server, path, host, method, body)
            assert status == 200, (path, host, status, data[:200])
    assert request(server, "/metrics", own)[1].startswith(b"# HELP")


def test_foreign_origin_cannot_start_a_synthesis(server):
    own = f"127.0.0.1:{server.port}"
    status, data = request(server, "/gradio_api/call/synthesize", own, "POST", {"data": ["csrf"]},
                           origin=f"http://{EVIL}")
    assert status == 403 and "Cross-site" in json.loads(data)["detail"]
    status, data = request(server, "/gradio_api/call/synthesize", own, "POST", {"data": ["own origin"]},
                           origin=f"http://{own}")
    assert status == 200 and "event_id" in json.loads(data)  # the page's own calls still go
