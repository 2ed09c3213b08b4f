"""Raw HTTP/1.1 on a socket for the fuzz and hostile-client tests: send bytes, read everything
the server says until it closes, split it into responses and check each one is well formed.

Pure parsing (`split_responses`, `byteranges`) is kept apart from the socket (`exchange`) so
the oracle itself is tested without a server (tests/test_wire.py).
"""

from __future__ import annotations

import re
import socket
import time
from dataclasses import dataclass

# HTTP/1.0 too: aiohttp (steering) answers a message it cannot parse as HTTP/1.0 400.
STATUS_LINE = re.compile(rb"HTTP/1\.[01] ([1-5][0-9][0-9]) [\x20-\x7e]*")
CONTENT_RANGE = re.compile(r"bytes ([0-9]+)-([0-9]+)/([0-9]+)")
BOUNDARY = re.compile(r"multipart/byteranges; boundary=([0-9A-Za-z'()+_,./:=?-]{1,70})")


class Malformed(AssertionError):
    """The server's bytes are not a sequence of HTTP/1.1 responses."""


class Hang(AssertionError):
    """The server neither finished nor closed within the time allowed."""


@dataclass(frozen=True)
class Response:
    """One parsed response: status, headers (names lower-cased, repeats joined), body."""

    status: int
    headers: dict[str, str]
    body: bytes
    bodiless: bool  # Content-Length announced a body that did not follow (a reply to HEAD)


def exchange(
    port: int,
    raw: bytes,
    timeout_s: float = 10.0,
    chunks: tuple[bytes, ...] = (),
    half_close: bool = True,
) -> tuple[bytes, bool]:
    """Send *raw* (then each of *chunks*) on a fresh connection, half-close, read until the
    server closes. Returns (all bytes read, reset); raises Hang after *timeout_s*.

    The half-close tells the server no more bytes are coming: RFC 9112 §9.6 lets it answer
    the complete requests it has and then close, so an incomplete request costs no timeout.
    aiohttp (steering) takes a half-close for a lost connection and answers nothing, so a
    complete request to it carries `Connection: close` and is sent with *half_close* False.
    A reset is an acceptable end (a server may abort after an error) and is reported."""
    deadline = time.monotonic() + timeout_s
    got: list[bytes] = []
    reset = False
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        try:
            sock.sendall(raw)
            for chunk in chunks:
                sock.sendall(chunk)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except OSError:  # EPIPE, ECONNRESET, ENOTCONN: the server closed early (e.g. after a
            reset = True  # 400 with bytes still unread): read what it said before that
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Hang(f"no close within {timeout_s} s; read {sum(map(len, got))} bytes")
            sock.settimeout(left)
            try:
                chunk = sock.recv(1 << 20)
            except TimeoutError:
                raise Hang(
                    f"no close within {timeout_s} s; read {sum(map(len, got))} bytes"
                ) from None
            except ConnectionResetError:
                reset = True
                break
            if not chunk:
                break
            got.append(chunk)
    return b"".join(got), reset


def split_responses(stream: bytes, head_possible: bool = False) -> list[Response]:
    """Every response in *stream* (Content-Length framed). A response whose announced body is
    absent is accepted as a reply to HEAD only when *head_possible*: the client knows whether
    it may have sent a HEAD (the bytes after it are then the next status line, or nothing)."""
    responses = []
    rest = stream
    while rest:
        head, sep, rest = rest.partition(b"\r\n\r\n")
        if not sep:
            raise Malformed(f"a response head never ends: {head[:200]!r}")
        lines = head.split(b"\r\n")
        match = STATUS_LINE.fullmatch(lines[0])
        if match is None:
            raise Malformed(f"not an HTTP/1.1 status line: {lines[0][:200]!r}")
        status = int(match[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or not name or name != name.strip() or b" " in name:
                raise Malformed(f"bad header line: {line[:200]!r}")
            key = name.decode("ascii").lower()
            text = value.strip().decode("latin-1")
            headers[key] = text if key not in headers else headers[key] + ", " + text
        length_text = headers.get("content-length")
        if status in (204, 304) or 100 <= status < 200:
            length = 0
        elif length_text is None or not length_text.isdigit():
            raise Malformed(f"{status} without a valid Content-Length: {headers}")
        else:
            length = int(length_text)
        bodiless = head_possible and length > 0 and (not rest or rest.startswith(b"HTTP/1."))
        if bodiless:
            body = b""
        else:
            if len(rest) < length:
                raise Malformed(f"{status}: body cut at {len(rest)} of {length} bytes")
            body, rest = rest[:length], rest[length:]
        responses.append(Response(status, headers, body, bodiless))
    return responses


def byteranges(body: bytes, boundary: str) -> list[tuple[int, int, int, bytes]]:
    """The parts of a multipart/byteranges body (RFC 9110 §14.6): (first, last, size, bytes)."""
    delimiter = b"\r\n--" + boundary.encode() + b"\r\n"
    closing = b"\r\n--" + boundary.encode() + b"--\r\n"
    if not body.endswith(closing):
        raise Malformed("multipart body does not end with the closing delimiter")
    # The body may begin with a CRLF before the first delimiter (the preamble is empty).
    text = body if body.startswith(b"\r\n") else b"\r\n" + body
    chunks = text[: -len(closing)].split(delimiter)
    if chunks[0] != b"":
        raise Malformed(f"multipart preamble is not empty: {chunks[0][:80]!r}")
    parts = []
    for chunk in chunks[1:]:
        head, sep, data = chunk.partition(b"\r\n\r\n")
        if not sep:
            raise Malformed("a multipart part has no header end")
        fields = dict(
            (name.strip().lower(), value.strip())
            for name, _, value in (line.partition(b":") for line in head.split(b"\r\n"))
        )
        match = CONTENT_RANGE.fullmatch(fields.get(b"content-range", b"").decode("latin-1"))
        if match is None:
            raise Malformed(f"a multipart part without Content-Range: {head!r}")
        first, last, size = (int(g) for g in match.groups())
        parts.append((first, last, size, data))
    if not parts:
        raise Malformed("multipart/byteranges with no part")
    return parts
