"""Request ids: the only handle by which a clip's files (audio, attachment) can be looked up.

An id is `YYYYmmddTHHMMSS-<8 lowercase hex>` (UTC time of the request plus 32 random bits), e.g.
`20250101T120000-0badf00d`. Anything that does not match REQUEST_ID_RE exactly is refused before it
gets near a path, so an id can never carry `/`, `..`, NUL or an absolute path.
"""
from __future__ import annotations

import re
import secrets
import time

# The one pattern every part checks ids against. Matched with fullmatch(): `$` alone would accept a
# trailing newline.
REQUEST_ID_RE = re.compile(r"^[0-9]{8}T[0-9]{6}-[0-9a-f]{8}$")


def new_request_id(now: float | None = None) -> str:
    """A fresh id: UTC timestamp (sorts by time) plus 8 random hex digits (no collisions in a second)."""
    t = time.gmtime(time.time() if now is None else now)
    return time.strftime("%Y%m%dT%H%M%S", t) + "-" + secrets.token_hex(4)


def is_request_id(value: object) -> bool:
    return isinstance(value, str) and REQUEST_ID_RE.fullmatch(value) is not None


def check_request_id(value: object) -> str:
    """Return value if it is a well-formed request id, else raise ValueError (message safe to show)."""
    if not is_request_id(value):
        shown = repr(value)[:40]
        raise ValueError(f"Not a request id: {shown} (expected YYYYmmddTHHMMSS-xxxxxxxx).")
    return value  # type: ignore[return-value]
