"""A real Prometheus server (Debian's `prometheus` 2.42) for the fleet tests: started on a free
loopback port with its storage in a temporary directory, queried over its HTTP API, stopped."""
from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

from tests.conftest import free_port

BINARY = shutil.which("prometheus")


class Prometheus:
    def __init__(self, tmp: Path, config: dict):
        self.tmp, self.port = tmp, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = tmp / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = tmp / "prometheus.log"
        self.proc = None

    def start(self, timeout: float = 60) -> "Prometheus":
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [BINARY, f"--config.file={self.config_path}", f"--storage.tsdb.path={self.tmp / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=1h"],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited: {self.log_path.read_text()[-3000:]}")
            try:
                if urllib.request.urlopen(self.url + "/-/ready", timeout=2).status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"prometheus not ready in {timeout} s: {self.log_path.read_text()[-3000:]}")

    def api(self, path: str, **params) -> dict:
        """GET /api/v1/<path>; returns the JSON (status "success" or "error", never raises on 400)."""
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=30) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:  # 400/422: a bad query; the body says why
            return json.loads(e.read())

    def query(self, expr: str) -> list[dict]:
        out = self.api("query", query=expr)
        assert out["status"] == "success", (expr, out)
        return out["data"]["result"]

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if getattr(self, "log", None):
            self.log.close()
