"""Shared fixtures: a real webui.py server (subprocess) and a gradio_client against it."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TRACEFS = Path("/sys/kernel/tracing")
ARTIFACTS = ROOT / "test-artifacts"


@contextmanager
def readonly_tracefs(tmp_path: Path):
    """A read-only bind mount of the real tracefs (the non-root / locked-down case); skips the test
    where bind mounts are not allowed. Unmounted on exit."""
    ro = tmp_path / "ro-tracefs"
    ro.mkdir()
    if subprocess.run(["mount", "--bind", str(TRACEFS), str(ro)], capture_output=True).returncode != 0:
        pytest.skip("cannot bind-mount tracefs here (needs root)")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(ro)], check=True, capture_output=True)
        yield ro
    finally:
        subprocess.run(["umount", str(ro)], capture_output=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def our_instances(pid: int | None = None, standby_ok: bool = True) -> list[str]:
    """Our trace instances (of one pid). A running service keeps ONE standby instance, created
    ahead and not recording (tracing_on 0), for its next request, and up to SPARES spares, not
    recording either, for the windows after (tracing/instances.py; their events go off once the
    service is idle: tests/test_idle.py checks that); with standby_ok those are not listed.
    Anything else (one still recording between requests, more idle ones) is a leak."""
    from tracing.instances import SPARES
    d = TRACEFS / "instances"
    if not d.is_dir():
        return []
    names = sorted(p.name for p in d.iterdir() if p.name.startswith("ittsw-"))
    if pid is not None:
        names = [n for n in names if n.split("-")[1] == str(pid)]
        if standby_ok:
            idle = []
            for n in names:
                try:
                    if (d / n / "tracing_on").read_text().strip() == "0":
                        idle.append(n)
                except OSError:
                    pass
            names = [n for n in names if n not in idle[:1 + SPARES]]
    return names


def settled_instances(pid: int, timeout: float = 5.0) -> list[str]:
    """our_instances(pid) once the service's aux thread has finished preparing the next window: a
    fresh instance reads tracing_on=1 for the few ms between its mkdir and its configuration."""
    deadline = time.monotonic() + timeout
    while (left := our_instances(pid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


class Server:
    """webui.py started for real, as ./start_app.sh would (minus the venv bootstrap)."""

    def __init__(self, tmp: Path, *extra: str, port: int | None = None, launcher: list[str] | None = None,
                 env: dict | None = None):
        """launcher: the command before the flags (default: this interpreter + webui.py; e.g.
        [ROOT / "start_app.sh"] for the real launch script); env: extra environment variables."""
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.outputs = tmp / "outputs"
        self.log_path = tmp / f"server-{self.port}.log"
        self.args = [*map(str, launcher or [sys.executable, ROOT / "webui.py"]), "--port", str(self.port),
                     "--outputs", str(self.outputs), *extra]
        self.extra_env = env or {}
        self.proc = None

    def start(self, timeout: float = 180) -> "Server":
        self.log = open(self.log_path, "w")
        env = dict(os.environ, PYTHONUNBUFFERED="1", GRADIO_ANALYTICS_ENABLED="False", **self.extra_env)
        self.proc = subprocess.Popen(self.args, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log_path.read_text()[-4000:]}")
            if self.ready():
                return self
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"server did not come up in {timeout} s:\n{self.log_path.read_text()[-4000:]}")

    def ready(self) -> bool:
        try:
            urllib.request.urlopen(self.url + "config", timeout=2)
            return True
        except urllib.error.HTTPError as e:
            return e.code in (401, 403)  # up, behind --auth (or a token)
        except OSError:
            return False

    def output(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> int | None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if getattr(self, "log", None):
            self.log.close()
        return self.proc.returncode if self.proc else None


def delivery_counts(server) -> dict:
    """itts_audio_delivery_total by outcome (app/delivery.py) from the server's /metrics."""
    from app.metrics import delivery_outcomes
    return delivery_outcomes(server.url)


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    # the suite is the operator: switching presets and downloading traces are open to it
    # --audio-wait-s 2 (the bound): tests that count how the analysis started (fetched / timeout)
    # assert the cause, not the speed; a busy CI machine may take over 0.5 s to fetch a wav
    srv = Server(tmp_path_factory.mktemp("srv"), "--i-know-this-is-open", "--audio-wait-s", "2").start()
    yield srv
    pid = srv.proc.pid
    srv.stop()
    assert our_instances(pid, standby_ok=False) == [], "the server left tracefs instances behind"


@pytest.fixture
def servers():
    """Servers a test starts; stopped (SIGTERM) at the end even when the test fails."""
    started: list[Server] = []
    yield started
    for s in started:
        s.stop()


@pytest.fixture(scope="session")
def client(server):
    from gradio_client import Client
    return Client(server.url, verbose=False)


@pytest.fixture(scope="session", autouse=True)
def no_leftover_instances():
    """Whatever a test does (and also when it fails), no instance of ours may stay behind."""
    before = set(our_instances())
    yield
    # ours: created by this pytest process, or by a process of the run that is gone (a child that
    # leaked). Live processes outside the run (an app being used meanwhile) are not judged here.
    left = {n for n in set(our_instances()) - before
            if n.split("-")[1] == str(os.getpid()) or not Path(f"/proc/{n.split('-')[1]}").exists()}
    for name in left:  # clean so the next run is not affected, then fail loudly
        subprocess.run(["rmdir", str(TRACEFS / "instances" / name)], check=False)
    assert not left, f"tracefs instances left behind: {sorted(left)}"


@pytest.fixture
def kernel_text(monkeypatch):
    """A KernelText of the test's own, unchecked: its windows read the kernel's text `trace`
    (the process's own is shared by every test, and trusted once any window has matched)."""
    from tracing import window
    kt = window.KernelText()
    monkeypatch.setattr(window, "KERNEL_TEXT", kt)
    return kt
