"""The launcher answers only to its own names: ASGI middleware on Gradio's app. No Gradio here.

Why (issue 24): a loopback launch answered a request whose Host header named another site with the
page, /config and the whole API. That is all a DNS-rebinding page needs: a site the operator
visits rebinds its name to 127.0.0.1 and, being same-origin with itself, reads the History (every
text, clip and cloned voice), starts syntheses and, on an --i-know-this-is-open launch, switches
presets of a root process. CORS does not help: to the browser the attacker's page IS the origin.

The rule, as Django's ALLOWED_HOSTS, Jupyter's local_hostnames and the dev servers apply it:
- Host (HTTP/1.1 requires it; the port is ignored, so a proxy on another port passes) must be one
  of the launcher's names: the loopback names (localhost, 127.0.0.1, ::1) and the bound address;
  bound to a specific address, also the machine's host names; bound to all (--host 0.0.0.0 / ::,
  upstream's default), also every address of this machine; plus each --allowed-hosts name (a proxy's or
  fleet's name: `tts.example.org`, `.example.org` for it and its subdomains, `*` for any: the old
  behaviour, said so at start-up).
- A state-changing request (anything but GET/HEAD/OPTIONS, and every WebSocket) that carries a
  browser's Origin is refused unless the Origin's host is one of those names too: a page on
  another site cannot make the operator's browser start syntheses or log in (CSRF). Requests
  without Origin (gradio_client, curl, Prometheus) are not browsers' cross-site requests.
Everything else gets 403 with a sentence naming the flag that allows it. Every route is covered
(page, /config, the API, /file=, /metrics, login), since the middleware sits in front of them all.
"""
from __future__ import annotations

import ipaddress
import json
import os
import socket
from urllib.parse import urlsplit

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
ANY = "*"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _wildcard(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def machine_names() -> set[str]:
    """This machine's host names and every address of its interfaces (what --host 0.0.0.0 serves)."""
    names = {socket.gethostname().lower(), socket.getfqdn().lower()}
    try:
        import psutil
        for addrs in psutil.net_if_addrs().values():
            for a in addrs:
                if a.family in (socket.AF_INET, socket.AF_INET6):
                    names.add(a.address.split("%", 1)[0].lower())  # fe80::1%eth0 -> fe80::1
    except Exception:  # psutil missing in a user env: the names above and the loopback ones remain
        pass
    return names


def own_names(bind_host: str, extra=(), machine=machine_names) -> set[str]:
    """The names the launcher answers to when bound to `bind_host`, plus `extra` (--allowed-hosts)."""
    host = _strip(bind_host or "127.0.0.1")
    names = set(LOOPBACK_NAMES) | {host}  # loopback names are never another site's
    if _wildcard(host):
        names |= machine()
    elif not _is_loopback(host):  # a specific address: it and the machine's host names
        names |= {n for n in machine() if not _is_ip(n)}
    return names | {_strip(e) for e in extra if e}


def _is_ip(s: str) -> bool:
    try:
        ipaddress.ip_address(s)
        return True
    except ValueError:
        return False


def _strip(host: str) -> str:
    """'[::1]:7860' -> '::1', 'Example.ORG.:80' -> 'example.org' (lower case, no port, no brackets)."""
    h = host.strip().lower()
    if h.startswith("["):
        h = h[1:].split("]", 1)[0]
    elif h.count(":") == 1:
        h = h.split(":", 1)[0]
    return h.rstrip(".")


def parse_allowed(values) -> list[str]:
    """--allowed-hosts values (each may hold a comma-separated list) -> names."""
    out = []
    for v in values or ():
        out += [s.strip() for s in str(v).split(",") if s.strip()]
    return out


SHARE_DOMAIN = ".gradio.live"  # GRADIO_SHARE's tunnel forwards its public name as the Host


class HostPolicy:
    @classmethod
    def from_args(cls, args, environ=os.environ) -> "HostPolicy":
        """The launcher's policy: --host, --allowed-hosts, and the share link's domain when
        GRADIO_SHARE is on (webui.py allows that only with --auth). Not verified against the live
        share service (no outside network here): its tunnel is expected to keep the public Host."""
        extra = list(args.allowed_hosts or [])
        if environ.get("GRADIO_SHARE", "").lower() in ("1", "true", "yes") and getattr(args, "auth", None):
            extra.append(SHARE_DOMAIN)
        return cls(args.host, extra)

    def __init__(self, bind_host: str, allowed=()):
        allowed = parse_allowed(allowed)
        self.any = ANY in allowed
        self.names = own_names(bind_host, [a for a in allowed if a != ANY and not a.startswith(".")])
        self.suffixes = tuple(_strip(a) for a in allowed if a.startswith(".") and len(a) > 1)

    def allows(self, host: str | None) -> bool:
        if self.any:
            return True
        if not host:
            return False
        h = _strip(host)
        return h in self.names or any(h == s.lstrip(".") or h.endswith(s) for s in self.suffixes)

    def describe(self) -> str:
        if self.any:
            return "Allowed hosts: any (--allowed-hosts '*': DNS-rebinding protection is off)"
        return "Allowed hosts: " + ", ".join(sorted(self.names) + [f"*{s}" for s in self.suffixes])

    def refusal(self, scope) -> str | None:
        """None when the request may pass, else the sentence of the 403."""
        headers = {k.lower(): v for k, v in scope.get("headers") or ()}
        host = headers.get(b"host", b"").decode("latin-1")
        if not self.allows(host):
            name = _strip(host) or "(none)"
            return (f"Host {name!r} is not one of this launcher's names ({', '.join(sorted(self.names))}). "
                    f"If it is reached by that name (a reverse proxy, a fleet's DNS name), start it with "
                    f"--allowed-hosts {name}.")
        origin = headers.get(b"origin")
        state_changing = scope["type"] == "websocket" or scope.get("method", "GET") not in SAFE_METHODS
        if origin is not None and state_changing and not self.any:
            o = origin.decode("latin-1")
            oh = urlsplit(o).hostname if o != "null" else None
            if not oh or not self.allows(oh):
                return (f"Cross-site request refused: Origin {o!r} is not this launcher's. A page served under "
                        f"another name may call it only if that name is allowed: --allowed-hosts "
                        f"{oh or '<name>'}.")
        return None


class AllowedHosts:
    """Middleware(AllowedHosts, policy=HostPolicy(...)): 403 for a foreign Host or a state-changing
    request from a foreign Origin (module docstring)."""

    def __init__(self, app, policy: HostPolicy):
        self.app, self.policy = app, policy

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        why = self.policy.refusal(scope)
        if why is None:
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":  # refused before the handshake is accepted
            await send({"type": "websocket.close", "code": 1008, "reason": why[:120]})
            return
        body = json.dumps({"detail": why}).encode()
        await send({"type": "http.response.start", "status": 403,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
