"""Helpers for tests of whole edge processes over their life: files, downloads held open,
waiting for a port to close or a process to exit."""

from __future__ import annotations

import os
import socket

from tests.edge.edgeproc import EdgeProcess, ResponseReader

SMALL = os.urandom(20_000)


BIG_SIZE = 64 << 20


def big_file() -> bytes:
    # Compressible-but-not-constant, cheap to make: a misplaced block would show.
    block = os.urandom(1 << 16)
    return b"".join(i.to_bytes(4, "big") + block[4:] for i in range(BIG_SIZE >> 16))


def refused(port: int) -> bool:
    """True once nothing accepts connections on *port* any more."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def start_download(edge: EdgeProcess, content_id: str) -> tuple[socket.socket, ResponseReader]:
    """A GET whose reader has taken its header and then stops reading (the server blocks)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.settimeout(20)
    sock.connect(("127.0.0.1", edge.port))
    sock.sendall(f"GET {edge.url(content_id)} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
    reader = ResponseReader(sock)
    while b"\r\n\r\n" not in reader.buf:
        assert reader._fill()
    return sock, reader


def finish_download(reader: ResponseReader) -> tuple[int, dict[str, str], bytes]:
    reader.sock.settimeout(30)
    return reader.next()


def wait_exit(edge: EdgeProcess, timeout: float = 30.0) -> int:
    assert edge.proc is not None
    return edge.proc.wait(timeout)
