"""Who may do what: the one place that decides operator actions. No Gradio here.

Operator actions are the ones that reach beyond a user's own request:
- switching the scheduling preset (service-wide, for one request, compare, snapshots): it changes
  the nice / policy / CPUs of a service that usually runs as root;
- downloading a clip's trace attachment: trace.txt is a system-wide ftrace of every process on the
  synthesis CPUs, which tracefs itself would refuse to most local users.

Loopback is NOT trusted: every local user (`nobody` included) can reach 127.0.0.1, and a reverse
proxy on the same host makes every one of its clients look local. So the bind address plays no
part. An operator action is allowed when one of these holds:
  1. the server runs with --auth USER:PASS: Gradio then requires the login on every route, so every
     call comes from someone who has the password;
  2. the call carries the operator token (--operator-token-file PATH, or ITTS_OPERATOR_TOKEN) in the
     X-Operator-Token header (API clients, scripts, `tracing snapshot --url`);
  3. the operator opened them with --i-know-this-is-open: anyone who can reach the port may.
Otherwise the UI and the API still synthesize (with the preset in force), show each clip's audio,
breakdown, findings and timeline, and refuse the actions above with a sentence naming these three.
"""
from __future__ import annotations

import hmac
import os
from dataclasses import dataclass

TOKEN_HEADER = "x-operator-token"
TOKEN_ENV = "ITTS_OPERATOR_TOKEN"
MIN_TOKEN_CHARS = 16

SWITCHING = "Preset switching"
TRACE_DOWNLOAD = "Trace download"


class AccessDenied(PermissionError):
    """An operator action refused; the message says how the operator enables it."""


@dataclass(frozen=True)
class AccessPolicy:
    auth: bool = False  # --auth: every request is logged in
    opened: bool = False  # --i-know-this-is-open
    token: str | None = None  # operator token, compared in constant time

    @classmethod
    def from_args(cls, args, environ=os.environ) -> "AccessPolicy":
        token = environ.get(TOKEN_ENV) or None
        path = getattr(args, "operator_token_file", None)
        if path:
            with open(path) as f:
                token = f.read().strip()
        if token is not None and len(token) < MIN_TOKEN_CHARS:
            raise ValueError(f"the operator token must be at least {MIN_TOKEN_CHARS} characters")
        return cls(auth=bool(getattr(args, "auth", None)), opened=bool(getattr(args, "i_know_this_is_open", False)),
                   token=token)

    def operator(self, request=None) -> bool:
        """Whether the call behind `request` (a gr.Request or anything with .headers) may act."""
        if self.auth or self.opened:
            return True
        if self.token and request is not None:
            headers = getattr(request, "headers", None) or {}
            given = headers.get(TOKEN_HEADER)
            return isinstance(given, str) and hmac.compare_digest(given.encode(), self.token.encode())
        return False

    @property
    def anyone(self) -> bool:
        """Operator actions are open to every caller (the UI enables its controls)."""
        return self.auth or self.opened

    def require(self, what: str, request=None) -> None:
        if not self.operator(request):
            raise AccessDenied(self.refusal(what))

    def refusal(self, what: str) -> str:
        return (f"{what} is disabled for this call: it is an operator action, and this server does not "
                "trust callers by their address. The operator can start it with --auth USER:PASS, send "
                "the operator token (X-Operator-Token header), or pass --i-know-this-is-open.")

    def attachment(self, path, request=None):
        """The trace attachment to hand out for a clip: `path` for an operator, else None."""
        return path if self.operator(request) else None

    def describe(self) -> str:
        if self.auth:
            return "operator actions (preset switching, trace downloads): for logged-in users (--auth)"
        if self.opened:
            return "operator actions (preset switching, trace downloads): OPEN to everyone who can reach the port"
        if self.token:
            return "operator actions (preset switching, trace downloads): only API calls with the operator token"
        return ("operator actions (preset switching, trace downloads): disabled (no --auth, no operator token, "
                "not opened with --i-know-this-is-open)")
