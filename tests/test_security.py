"""Security defaults of the real server: loopback bind, Gradio auth, no preset switching when
exposed without auth, operator-only presets, real-time only on request, id-only access to clips,
and history retention."""
from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from tests.conftest import ROOT, Server, our_instances
from tests.proc_state import sched_changes, thread_sched


class LogReadyServer(Server):
    """A Server that is ready when its log says so: with --auth every HTTP probe answers 401,
    and Server.start() takes any HTTP error for 'not up yet'."""

    def ready(self) -> bool:
        return "Prometheus metrics at" in self.output()  # printed after app.launch() returned


@pytest.fixture
def servers():
    started: list[Server] = []
    yield started
    for s in started:
        pid = s.proc.pid if s.proc else None
        s.stop()
        if pid:
            assert our_instances(pid, standby_ok=False) == []


def http_status(url: str, auth_cookie: str | None = None) -> int:
    req = urllib.request.Request(url, headers={"Cookie": auth_cookie} if auth_cookie else {})
    try:
        return urllib.request.urlopen(req, timeout=20).status
    except urllib.error.HTTPError as e:
        return e.code


def synth(client, text="Security check.", **kw):
    return client.predict(text=text, api_name="/synthesize", **kw)


# ------------------------------------------------------------------------------ binding ----
def test_default_bind_is_loopback_only(server):
    ports = {c.laddr for c in psutil.Process(server.proc.pid).net_connections("inet")
             if c.status == psutil.CONN_LISTEN}
    assert (("127.0.0.1", server.port)) in ports
    assert all(ip == "127.0.0.1" for ip, _ in ports), ports


# ------------------------------------------------------------ exposure and preset switching ----
def test_exposed_without_auth_refuses_preset_switching(tmp_path, servers):
    # 0.0.0.0 is a non-loopback bind; the test reaches it through 127.0.0.1
    srv = Server(tmp_path, "--no-warmup", "--host", "0.0.0.0")
    servers.append(srv.start())
    assert "switching, trace downloads): disabled" in srv.output()
    client = Client(srv.url, verbose=False)
    before = thread_sched(srv.proc.pid)
    for call in (lambda: client.predict(name="pinned", api_name="/apply_preset"),
                 lambda: synth(client, preset="pinned"),
                 lambda: synth(client, preset="pinned", scope="this request only"),
                 lambda: client.predict(text="x", preset_a="default", preset_b="pinned", api_name="/compare")):
        with pytest.raises(AppError, match="Preset switching is disabled"):
            call()
    assert synth(client)[9]["preset"]["preset"] == "default"  # synthesis itself still works
    assert sched_changes(before, thread_sched(srv.proc.pid)) == {}
    # upstream's bind: the machine's names and addresses answer (app/allowed_hosts.py), others do not
    import http.client
    import socket
    addrs = [a.address for nic, al in psutil.net_if_addrs().items() for a in al
             if a.family == socket.AF_INET and not a.address.startswith("127.")]
    for connect_to, host, want in [("127.0.0.1", socket.gethostname(), 200), ("127.0.0.1", "localhost", 200),
                                   *[(a, a, 200) for a in addrs[:1]], ("127.0.0.1", "rebind.attacker.example", 403)]:
        c = http.client.HTTPConnection(connect_to, srv.port, timeout=20)
        c.request("GET", "/config", headers={"Host": f"{host}:{srv.port}"})
        assert c.getresponse().status == want, (connect_to, host)


def test_exposed_with_i_know_this_is_open_allows_switching(tmp_path, servers):
    srv = Server(tmp_path, "--no-warmup", "--host", "0.0.0.0", "--i-know-this-is-open")
    servers.append(srv.start())
    assert "OPEN to everyone who can reach the port" in srv.output()
    client = Client(srv.url, verbose=False)
    out = synth(client, preset="pinned", scope="this request only")
    assert out[9]["preset"]["preset"] == "pinned"


def test_auth_required_and_then_switching_allowed_on_exposed_host(tmp_path, servers):
    srv = LogReadyServer(tmp_path, "--no-warmup", "--host", "0.0.0.0", "--auth", "alice:s3cret-pass")
    servers.append(srv.start())
    assert "for logged-in users (--auth)" in srv.output()
    assert http_status(srv.url + "gradio_api/info") == 401
    assert http_status(srv.url + "config") == 401
    with pytest.raises(Exception):
        Client(srv.url, verbose=False)  # no login
    with pytest.raises(Exception):
        Client(srv.url, auth=("alice", "wrong"), verbose=False)
    client = Client(srv.url, auth=("alice", "s3cret-pass"), verbose=False)
    out = synth(client, preset="pinned", scope="this request only")
    assert out[9]["preset"]["preset"] == "pinned"
    # the attachment and history are behind the login too
    assert http_status(srv.url + "gradio_api/file=" + out[8]) in (401, 403)


def test_auth_flag_needs_user_and_password(tmp_path):
    import subprocess
    import sys
    p = subprocess.run([sys.executable, str(ROOT / "webui.py"), "--auth", "nocolon"], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 2 and "USER:PASS" in p.stderr


# ------------------------------------------------------ operator presets, realtime, retention ----
OPERATOR_PRESETS = """\
allowed = ["default", "studio", "realtime"]

[presets.studio]
cpus = "last:1"
nice = 5
description = "Operator's own preset: last CPU, nice 5."
"""


def test_operator_presets_realtime_flag_and_retention(tmp_path, servers):
    pfile = tmp_path / "ops-presets.toml"
    pfile.write_text(OPERATOR_PRESETS)
    srv = Server(tmp_path, "--no-warmup", "--presets", str(pfile), "--allow-realtime", "--keep-clips", "3",
                 "--i-know-this-is-open")
    servers.append(srv.start())
    client = Client(srv.url, verbose=False)
    info = json.loads(urllib.request.urlopen(srv.url + "gradio_api/info", timeout=20).read())
    preset_param = next(p for p in info["named_endpoints"]["/synthesize"]["parameters"]
                        if p["parameter_name"] == "preset")
    assert set(preset_param["type"]["enum"]) == {"(keep the preset in force)", "default", "studio", "realtime"}
    with pytest.raises(AppError, match="priority"):
        synth(client, preset="priority")  # shipped, but not in the operator's allowed list
    out = synth(client, preset="studio", scope="this request only")
    assert out[9]["preset"]["preset"] == "studio" and out[9]["preset"]["nice"] == 5
    # realtime is allowed here: read back from the kernel, then back to default
    _, _, rb = client.predict(name="realtime", api_name="/apply_preset")[:3]
    assert rb["policy"] == "fifo" and rb["rt_priority"] == 10 and rb["matches"], rb
    client.predict(name="default", api_name="/apply_preset")
    pid = srv.proc.pid
    assert all(t[3] != 1 for t in thread_sched(pid).values()), "a thread kept SCHED_FIFO"

    ids = [synth(client, f"Clip {i}.")[1] for i in range(3)]
    clips = sorted(p.name for p in (srv.outputs / "clips").iterdir())
    assert clips == sorted(ids), "retention keeps only the newest 3 clips"
    hist = client.predict(api_name="/history")
    rows = hist["data"] if isinstance(hist, dict) else hist
    assert [r[0] for r in rows] == ids[::-1]
    with pytest.raises(AppError, match="No attachment stored"):
        client.predict(out[1], api_name="/download")  # the oldest one was removed


def test_bad_operator_preset_file_refuses_to_start(tmp_path):
    import subprocess
    import sys
    pfile = tmp_path / "bad.toml"
    pfile.write_text('[presets.broken]\nnice = "very"\n')
    p = subprocess.run([sys.executable, str(ROOT / "webui.py"), "--presets", str(pfile), "--no-warmup",
                        "--port", "1"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "bad.toml" in p.stderr, p.stderr[-1000:]


def test_realtime_refused_without_allow_realtime(server, client):
    before = thread_sched(server.proc.pid)
    with pytest.raises(AppError, match="--allow-realtime"):
        synth(client, preset="realtime", scope="this request only")
    with pytest.raises(AppError, match="--allow-realtime"):
        client.predict(name="realtime", api_name="/apply_preset")
    assert sched_changes(before, thread_sched(server.proc.pid)) == {}
    assert all(t[3] != 1 for t in thread_sched(server.proc.pid).values())


# --------------------------------------------------------------------- clips only by id ----
def test_clip_files_not_served_by_path(server, client):
    """Gradio's file route serves what a call returned; the clip store itself (records, other
    clips' files, anything by path) is not reachable by path."""
    out = synth(client)
    rid = out[1]
    clip_dir = server.outputs / "clips" / rid
    base = server.url + "gradio_api/file="
    for path in (clip_dir / "record.json", clip_dir / "audio.wav", clip_dir / "trace.zip",
                 server.outputs / "clips", Path("/etc/passwd"), ROOT / "webui.py"):
        assert http_status(base + str(path)) in (403, 404), path
    assert http_status(base + "../" * 8 + "etc/passwd") in (403, 404)
    # by id it works: the download is a copy Gradio serves from its cache
    assert Path(client.predict(rid, api_name="/download")).read_bytes() == (clip_dir / "trace.zip").read_bytes()
