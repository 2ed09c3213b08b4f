"""One Content-Length framed HTTP/1.1 response read off a blocking socket (the normal client's
reader)."""

from __future__ import annotations

import socket


def read_response(sock: socket.socket, buf: bytes) -> tuple[int, bytes, bytes]:
    """One Content-Length framed response: (status, body, bytes read past it)."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(1 << 17)
        if not chunk:
            raise ConnectionError("closed before a full head")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for header in lines[1:]:
        name, _, value = header.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    parts, have = [rest], len(rest)
    while have < length:
        chunk = sock.recv(1 << 17)
        if not chunk:
            raise ConnectionError("closed mid-body")
        parts.append(chunk)
        have += len(chunk)
    whole = b"".join(parts)
    return status, whole[:length], whole[length:]
