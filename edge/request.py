"""One HTTP request as the edge reads it: the headers it keeps, the content id it accepts, and
the `Request` a parsed message becomes when it must wait for its answer (`edge.server`)."""

from __future__ import annotations

import re
from typing import Final

CONTENT_ID_B: Final = re.compile(rb"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
# Request headers the edge acts on or logs, each with True when it is a precondition (RFC 9110
# §13.1: If-*, which the fast path leaves to the general path); the rest are parsed and dropped.
WANTED: Final = {
    b"range": False,
    b"if-range": True,
    b"if-match": True,
    b"if-none-match": True,
    b"if-modified-since": True,
    b"if-unmodified-since": True,
    b"referer": False,
    b"user-agent": False,
}
# Header names are filtered by length before lower(): most of a request's headers go no further.
# llhttp reads Proxy-Connection exactly as Connection: both make the version matter.
CONNECTION_NAMES: Final = (b"connection", b"proxy-connection")
WANTED_LENGTHS: Final = frozenset(len(name) for name in (*WANTED, *CONNECTION_NAMES))


class RejectRequest(Exception):
    """Raised from a parser callback to refuse the request (the status is set aside first)."""


class Request:
    """One parsed request, waiting for its response."""

    __slots__ = (
        "conditional",
        "delayed",
        "headers",
        "keep_alive",
        "method",
        "minor",
        "received",
        "target",
        "try_fast",
    )

    def __init__(
        self,
        method: bytes,
        target: bytes,
        headers: dict[bytes, bytes],
        keep_alive: bool,
        minor: int,
        received: float,
        conditional: bool,
    ) -> None:
        self.method = method
        self.target = target
        self.headers = headers
        self.keep_alive = keep_alive
        self.minor = minor
        self.received = received
        self.conditional = conditional  # an If-* header is present
        self.try_fast = True  # False: the fast path already declined it
        self.delayed = False  # the fault-delay switch already held it back
