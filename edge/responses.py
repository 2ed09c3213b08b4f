"""Response header bytes built once: status lines and the fixed header lines of error replies."""

from __future__ import annotations

from http import HTTPStatus
from typing import Final

# uvicorn builds its status lines at import; so do we (STYLE.md §5).
STATUS_LINE: Final = {
    s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode("latin-1") for s in HTTPStatus
}
SERVER: Final = b"Server: edgefleet\r\n"
CLOSE: Final = b"Connection: close\r\n"
KEEP_ALIVE: Final = b"Connection: keep-alive\r\n"
TEXT: Final = b"Content-Type: text/plain; charset=utf-8\r\n"
ALLOW: Final = b"Allow: GET, HEAD\r\n"


def simple_head(
    status: int,
    body_len: int,
    date_line: bytes,
    connection: bytes,
    extra: bytes = b"",
    content_type: bytes = TEXT,
) -> bytes:
    """Header of a small generated reply (errors, health, metrics)."""
    return b"".join(
        (
            STATUS_LINE[status],
            date_line,
            SERVER,
            content_type,
            b"Content-Length: %d\r\n" % body_len,
            extra,
            connection,
            b"\r\n",
        )
    )
