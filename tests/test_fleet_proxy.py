"""A launcher behind a real reverse proxy (Debian's nginx) under a fleet name: with
`--allowed-hosts tts.fleet.example` the name works for gradio_client and for a real browser
(Chromium resolving the name to loopback), which synthesizes through the proxy; another name sent
through the same proxy gets the 403 that names the flag. Marker fleet (its own .ci/run step)."""
from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import time

import pytest

from tests.conftest import ARTIFACTS, Server, free_port
from tests.e2e.conftest import ARGS, CHROMIUM

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
NAME = "tts.fleet.example"
OTHER = "other.fleet.example"
pytestmark = [pytest.mark.fleet, pytest.mark.skipif(NGINX is None, reason="nginx missing (run_tests.sh installs it)")]

CONF = """
user root;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log;
events {{ worker_connections 256; }}
http {{
    access_log {tmp}/access.log;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    client_max_body_size 100m;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            # what docs/fleet.md recommends: the client's Host passes through (so the launcher
            # sees the fleet name and must allow it), streaming responses are not buffered
            proxy_pass http://127.0.0.1:{upstream};
            proxy_http_version 1.1;
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_buffering off;
            proxy_read_timeout 300s;
        }}
    }}
}}
"""


@pytest.fixture(scope="module")
def proxied(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("proxy")
    srv = Server(tmp, "--allowed-hosts", NAME)
    nginx = None
    try:
        srv.start()
        port = free_port()
        (tmp / "nginx.conf").write_text(CONF.format(tmp=tmp, port=port, upstream=srv.port))
        nginx = subprocess.Popen([NGINX, "-c", str(tmp / "nginx.conf"), "-p", str(tmp), "-g", "daemon off;"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                http.client.HTTPConnection("127.0.0.1", port, timeout=2).connect()
                break
            except OSError:
                assert nginx.poll() is None, (tmp / "error.log").read_text()
                time.sleep(0.2)
        yield srv, port
    finally:
        if nginx and nginx.poll() is None:
            nginx.send_signal(signal.SIGQUIT)  # graceful stop
            nginx.wait(20)
        srv.stop()


def get(port, path, host):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("GET", path, headers={"Host": host})
    r = c.getresponse()
    return r.status, r.read()


def test_allowed_name_through_the_proxy_and_another_refused(proxied):
    srv, port = proxied
    assert get(port, "/config", f"{NAME}:{port}")[0] == 200
    status, body = get(port, "/config", f"{OTHER}:{port}")
    assert status == 403 and f"--allowed-hosts {OTHER}" in json.loads(body)["detail"]
    status, body = get(port, "/metrics", f"{OTHER}:{port}")
    assert status == 403
    assert get(port, "/metrics", f"{NAME}:{port}")[1].startswith(b"# HELP")


def test_gradio_client_through_the_proxy_by_the_fleet_name(proxied):
    from gradio_client import Client
    srv, port = proxied
    c = Client(f"http://127.0.0.1:{port}/", headers={"Host": f"{NAME}:{port}"}, verbose=False)
    out = c.predict(text="Through the proxy.", api_name="/synthesize")
    assert os.path.getsize(out[0]) > 1000 and out[-1]["request_id"]
    with pytest.raises(ValueError, match="Could not fetch config"):  # the same client, a name not allowed (403)
        Client(f"http://127.0.0.1:{port}/", headers={"Host": f"{OTHER}:{port}"}, verbose=False)


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium not installed")
def test_browser_synthesizes_through_the_proxy(proxied):
    from playwright.sync_api import sync_playwright

    srv, port = proxied
    ARTIFACTS.mkdir(exist_ok=True)
    rules = f"--host-resolver-rules=MAP {NAME} 127.0.0.1, MAP {OTHER} 127.0.0.1"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[*ARGS, rules])
        try:
            page = browser.new_context(viewport={"width": 1400, "height": 1800}).new_page()
            page.set_default_timeout(120_000)
            page.goto(f"http://{NAME}:{port}/")
            page.wait_for_selector("#generate")
            page.locator("#text textarea").fill("Hello through the reverse proxy.")
            page.locator("#generate").click()  # its POSTs carry Origin http://NAME:port
            page.wait_for_function("() => document.querySelector('#clip_id textarea, #clip_id input')?.value")
            page.wait_for_selector("#breakdown table")  # the analysis step came through the proxy too
            rid = page.locator("#clip_id textarea, #clip_id input").first.input_value()
            page.wait_for_function("() => !document.body.innerText.includes('packing the attachment')")  # complete
            assert rid and (srv.outputs / "clips" / rid / "audio.wav").is_file()
            page.screenshot(path=str(ARTIFACTS / "fleet-proxy-clip.png"), full_page=True)
            resp = page.goto(f"http://{OTHER}:{port}/")
            assert resp.status == 403 and f"--allowed-hosts {OTHER}" in page.content()
        finally:
            browser.close()
