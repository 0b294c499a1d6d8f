"""The login door (--auth), as ASGI middleware on Gradio's FastAPI app. No Gradio here.

LoginPageNoSchema: Gradio's login page (the page it serves before the login) embeds the whole API
schema (every endpoint, parameter and preset name) in `window.gradio_api_info`; before the login it
is replaced by null. After the login the page, /gradio_api/info and the "Use via API" view are
unchanged.

LoginRateLimit: Gradio's /login has no limit (300 wrong passwords in 3 s were answered). Per client address, at
most MAX_FAILURES failed logins (any non-2xx/3xx answer of POST .../login) per WINDOW_S; beyond
that every login from that address is answered 429 without being checked until the window has
passed. Behind a reverse proxy on the same host all clients share the proxy's address, so the
limit becomes global there: a guessing attack then also delays the operator's own login, never
more than WINDOW_S after it stops (put per-client limits in the proxy for public exposure).
"""
from __future__ import annotations

import json
import re
import threading
import time
from collections import defaultdict, deque

MAX_FAILURES = 10
WINDOW_S = 60.0


class LoginRateLimit:
    def __init__(self, app, max_failures: int = MAX_FAILURES, window_s: float = WINDOW_S, clock=time.monotonic):
        self.app = app
        self.max_failures, self.window_s, self.clock = max_failures, window_s, clock
        self._fails: dict[str, deque] = defaultdict(deque)
        self._lock = threading.Lock()

    def _recent(self, who: str, now: float) -> deque:
        q = self._fails[who]
        while q and now - q[0] > self.window_s:
            q.popleft()
        if not q:
            self._fails.pop(who, None)
        return q

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") != "POST" or not scope.get("path", "").rstrip("/").endswith("/login"):
            return await self.app(scope, receive, send)
        who = (scope.get("client") or ("?", 0))[0]
        now = self.clock()
        with self._lock:
            q = self._recent(who, now)
            blocked = len(q) >= self.max_failures
            retry = int(self.window_s - (now - q[0])) + 1 if blocked else 0
        if blocked:
            body = json.dumps({"detail": f"Too many failed logins; try again in {retry} s."}).encode()
            await send({"type": "http.response.start", "status": 429,
                        "headers": [(b"content-type", b"application/json"), (b"retry-after", str(retry).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        status = {}

        async def watch(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        await self.app(scope, receive, watch)
        if status.get("code", 500) >= 400:
            with self._lock:
                self._fails[who].append(self.clock())


_API_INFO = re.compile(rb"(window\.gradio_api_info = ).*?(;</script>)", re.S)


class LoginPageNoSchema:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "")
        if scope["type"] != "http" or scope.get("method") != "GET" or "/gradio_api/" in path or "/assets/" in path:
            return await self.app(scope, receive, send)
        start: dict = {}
        chunks: list[bytes] = []

        async def hold(message):
            if message["type"] == "http.response.start":
                start.update(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            body = b"".join(chunks)
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            html = any(k.lower() == b"content-type" and v.startswith(b"text/html") for k, v in headers)
            if html and b'"auth_required":true' in body.replace(b" ", b""):
                body = _API_INFO.sub(rb"\1null\2", body, count=1)
            await send({**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, hold)
