"""The connection (edge/server.py) without a live edge process: `EdgeProtocol` on the typed fake
worker, fed bytes with `data_received`, its sender writing a real TCP socket on 127.0.0.1 whose
other end the test reads. Real files, real sendfile (and the pread fallback), real tokens.

The live-server tests (test_server_protocol.py, test_server_ranges.py) cover the same
behaviour through a whole edge process; these run in milliseconds and can see inside."""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from edge import tokencheck
from edge.sender import PlainSender
from edge.server import IDLE, LINGER, EdgeProtocol
from edgefleet.tokens import Keyring, new_key, signed_query
from tests.edge.edgeproc import ResponseReader
from tests.edge.fakeworker import FakeTransport, FakeWorker, connect

DATA = os.urandom(100_000)


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(params=[True, False], ids=["sendfile", "fallback"])
def worker(
    request: pytest.FixtureRequest, loop: asyncio.AbstractEventLoop, tmp_path: Path
) -> FakeWorker:
    worker = FakeWorker(loop, tmp_path, use_sendfile=request.param)
    worker.add_file("blob", DATA)
    return worker


class Client:
    """The protocol on one end of a TCP pair, the test on the other."""

    def __init__(self, worker: FakeWorker, sndbuf: int = 0) -> None:
        with socket.create_server(("127.0.0.1", 0)) as listener:
            self.sock = socket.create_connection(listener.getsockname())
            server, _ = listener.accept()
        if sndbuf:
            server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, sndbuf)
        self.sock.settimeout(10)
        self.proto, self.transport = connect(worker, server)
        server.close()  # the protocol's sender writes to its own dup()
        self.reader = ResponseReader(self.sock)

    def send(self, raw: bytes) -> None:
        self.proto.data_received(raw)

    def get(self, raw: bytes, head: bool = False) -> tuple[int, dict[str, str], bytes]:
        self.send(raw)
        return self.reader.next(head)

    def close(self) -> None:
        self.proto.connection_lost(None)
        self.sock.close()


@pytest.fixture
def client(worker: FakeWorker) -> Iterator[Client]:
    c = Client(worker)
    yield c
    c.close()


def get(target: str = "/c/blob", *headers: str, method: str = "GET") -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: edge", *headers, "", ""]
    return "\r\n".join(lines).encode()


def test_a_range_get_is_answered_from_the_parser_callback(
    client: Client, worker: FakeWorker
) -> None:
    status, headers, body = client.get(get("/c/blob", "Range: bytes=100-4195"))
    assert (status, body) == (206, DATA[100:4196])
    assert headers["content-range"] == f"bytes 100-4195/{len(DATA)}"
    assert not client.proto.out and client.proto.state == IDLE
    assert worker.stats.requests == {206: 1}
    assert worker.stats.bytes_sent > len(body)  # the head counts too
    assert worker.served == {b"blob": 4096}


def test_a_full_get(client: Client, worker: FakeWorker) -> None:
    status, headers, body = client.get(get())
    assert (status, body) == (200, DATA)
    assert headers["content-length"] == str(len(DATA))
    assert headers["accept-ranges"] == "bytes"
    assert worker.served == {b"blob": len(DATA)}


def test_head_sends_the_get_head_and_no_body(client: Client) -> None:
    status, headers, body = client.get(get(method="HEAD"), head=True)
    assert (status, body) == (200, b"")
    # Nothing but the head was written: the next response starts right after it.
    status2, headers2, body2 = client.get(get())
    assert (status2, body2) == (200, DATA)
    assert headers == headers2


def test_conditionals_304_and_412(client: Client) -> None:
    _, headers, _ = client.get(get(method="HEAD"), head=True)
    etag = headers["etag"]
    status, h304, body = client.get(get("/c/blob", f"If-None-Match: {etag}"))
    assert (status, body, h304["etag"]) == (304, b"", etag)
    assert h304["last-modified"] == headers["last-modified"]
    status, _, body = client.get(get("/c/blob", 'If-Match: "another"'))
    assert (status, body) == (412, b"precondition failed\n")


def test_an_unsatisfiable_range_is_416(client: Client) -> None:
    status, headers, _ = client.get(get("/c/blob", f"Range: bytes={len(DATA)}-"))
    assert status == 416
    assert headers["content-range"] == f"bytes */{len(DATA)}"


def test_multipart(client: Client) -> None:
    status, headers, body = client.get(get("/c/blob", "Range: bytes=0-9,50000-50009"))
    assert status == 206
    assert headers["content-type"].startswith("multipart/byteranges; boundary=")
    assert DATA[0:10] in body and DATA[50000:50010] in body
    assert body.endswith(b"--\r\n")


def test_pipelined_requests_are_answered_in_order(client: Client, worker: FakeWorker) -> None:
    client.send(
        get("/c/blob", "Range: bytes=0-99")
        + get(method="HEAD")
        + get("/c/blob", "Range: bytes=200-299")
        + get("/nowhere")
    )
    assert client.reader.next()[::2] == (206, DATA[0:100])
    assert client.reader.next(head=True)[0] == 200
    assert client.reader.next()[::2] == (206, DATA[200:300])
    assert client.reader.next()[::2] == (404, b"not found\n")
    assert worker.stats.requests == {206: 2, 200: 1, 404: 1}
    assert not client.proto.queue and not client.proto.out


def test_keep_alive_stays_open_and_connection_close_lingers(client: Client) -> None:
    for _ in range(3):
        assert client.get(get("/c/blob", "Range: bytes=0-0"))[0] == 206
    assert client.proto.state == IDLE and not client.transport.closed
    status, headers, _ = client.get(get("/c/blob", "Range: bytes=0-0", "Connection: close"))
    assert (status, headers["connection"]) == (206, "close")
    # Half-closed (the lingering close of RFC 9112 §9.6): the client reads EOF.
    assert client.proto.state == LINGER
    assert client.reader.closed()
    client.send(get())  # discarded while lingering
    client.proto.eof_received()
    assert client.transport.closed


def test_http10_keep_alive_is_announced(client: Client) -> None:
    raw = b"GET /c/blob HTTP/1.0\r\nConnection: keep-alive\r\nRange: bytes=0-0\r\n\r\n"
    status, headers, _ = client.get(raw)
    assert (status, headers["connection"]) == (206, "keep-alive")
    status, headers, _ = client.get(b"GET /c/blob HTTP/1.0\r\nRange: bytes=0-0\r\n\r\n")
    assert (status, headers["connection"]) == (206, "close")


def test_tokens(loop: asyncio.AbstractEventLoop, tmp_path: Path) -> None:
    ring = Keyring(keys={"k1": bytes.fromhex(new_key())}, current="k1")
    worker = FakeWorker(loop, tmp_path, keyring=ring)
    worker.add_file("blob", DATA)
    client = Client(worker)
    try:
        query = signed_query(ring, "blob", int(time.time()) + 60)
        tampered = query.replace("e=", "e=1")
        status, _, body = client.get(get(f"/c/blob?{tampered}", "Range: bytes=0-9"))
        assert status == 403 and body.startswith(b"token")
        assert not worker.tokens_seen
        status, _, body = client.get(get(f"/c/blob?{query}", "Range: bytes=0-9"))
        assert (status, body) == (206, DATA[:10])
        assert worker.tokens_seen  # verified once, remembered for the next ranges
        status, _, body = client.get(get(f"/c/blob?{query}", "Range: bytes=10-19"))
        assert (status, body) == (206, DATA[10:20])
        assert client.get(get("/c/blob", "Range: bytes=0-9"))[0] == 403  # no token at all
        assert {k for k in worker.stats.errors if k.startswith("token_")}
    finally:
        client.close()


def test_a_malformed_request_is_400_then_closed(client: Client, worker: FakeWorker) -> None:
    status, _, body = client.get(b"GET /c/blob HTTP/1.1\r\nHost edge\r\n\r\n")
    assert (status, body) == (400, b"malformed request\n")
    assert client.reader.closed()
    assert client.proto.state == LINGER
    assert worker.stats.errors == {"bad_request_400": 1}


def test_a_full_socket_waits_for_writability(
    worker: FakeWorker, loop: asyncio.AbstractEventLoop
) -> None:
    # Small socket buffers: the sender meets EAGAIN, registers a writer and the connection
    # stops reading; the loop's writable callbacks send the rest.
    client = Client(worker, sndbuf=16 * 1024)
    try:
        client.send(get() + get("/c/blob", "Range: bytes=0-9"))
        proto = client.proto
        assert isinstance(proto.sender, PlainSender)
        assert proto.out and proto.sender.waiting
        assert client.transport.paused

        async def read_both() -> list[tuple[int, dict[str, str], bytes]]:
            return [
                await loop.run_in_executor(None, client.reader.next),
                await loop.run_in_executor(None, client.reader.next),
            ]

        (s1, _, b1), (s2, _, b2) = loop.run_until_complete(asyncio.wait_for(read_both(), 30))
        assert (s1, b1) == (200, DATA)
        assert (s2, b2) == (206, DATA[:10])
        assert not proto.out and not proto.sender.waiting
        assert not client.transport.paused and client.transport.calls[-1] == "resume"
        assert worker.stats.requests == {200: 1, 206: 1}
    finally:
        client.close()


def test_a_missing_file_and_an_unknown_id(client: Client, worker: FakeWorker) -> None:
    worker.add_file("other", b"x")
    (worker.root / "other").unlink()
    assert client.get(get("/c/other"))[0] == 404
    assert worker.unavailable == [b"other"]
    assert client.get(get("/c/nothing"))[::2] == (404, b"no such content\n")


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_long_body_is_not_counted_as_head(client: Client, chunked: bool) -> None:
    # The head ends where the body begins: body bytes arriving in later reads never count
    # against max_header_bytes (8 KiB), however many there are.
    piece = b"x" * 8192
    if chunked:
        client.send(b"POST /c/blob HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(4):
            client.send(b"2000\r\n" + piece + b"\r\n")
        client.send(b"0\r\n\r\n")
    else:
        client.send(b"POST /c/blob HTTP/1.1\r\nContent-Length: 32768\r\n\r\n")
        for _ in range(4):
            client.send(piece)
    assert client.reader.next()[::2] == (405, b"method not allowed\n")
    # ...while a head that never ends is cut off at the limit.
    client.send(b"GET /c/blob HTTP/1.1\r\nX-Long: ")
    for _ in range(3):
        client.send(piece)
    assert client.reader.next()[::2] == (431, b"request header fields too large\n")


def test_verified_urls_are_remembered_per_connection_within_bounds(
    loop: asyncio.AbstractEventLoop, tmp_path: Path
) -> None:
    ring = Keyring(keys={"k1": bytes.fromhex(new_key())}, current="k1")
    worker = FakeWorker(loop, tmp_path, keyring=ring)
    worker.add_file("blob", DATA)
    client = Client(worker)
    try:
        now = int(time.time())
        queries = [signed_query(ring, "blob", now + 60 + i) for i in range(20)]
        for query in queries:  # verified by the general path, then answered by the fast path
            for _ in range(2):
                status, _, body = client.get(get(f"/c/blob?{query}", "Range: bytes=0-9"))
                assert (status, body) == (206, DATA[:10])
        assert 1 <= len(client.proto.known_targets) <= 8
        assert len(worker.tokens_seen) == 20
        long_url = f"/c/blob?{queries[0]}&pad={'a' * 600}"
        assert client.get(get(long_url, "Range: bytes=0-9"))[0] == 206
        assert long_url.encode() not in client.proto.known_targets
        # A key reload empties tokens_seen: what the connection remembers is checked again.
        worker.tokens_seen = {}
        for _ in range(2):
            assert client.get(get(f"/c/blob?{queries[-1]}", "Range: bytes=0-9"))[0] == 206
        assert len(worker.tokens_seen) == 1
        assert list(client.proto.known_targets) == [f"/c/blob?{queries[-1]}".encode()]
    finally:
        client.close()


def test_a_connection_whose_dup_fails_is_uncounted_when_lost(
    loop: asyncio.AbstractEventLoop, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Out of descriptors (EMFILE, a hostile-client flood): the connection asyncio gave up on
    must not keep a slot of max_connections_per_worker, nor hold a drain open, for ever."""
    worker = FakeWorker(loop, tmp_path)
    server, client = socket.socketpair()

    def no_descriptors(fd: int) -> int:
        raise OSError(errno.EMFILE, "Too many open files")

    proto = EdgeProtocol(worker)
    with monkeypatch.context() as patched:
        patched.setattr(os, "dup", no_descriptors)
        with pytest.raises(OSError):
            proto.connection_made(FakeTransport(server))
    proto.connection_lost(None)  # what asyncio does after a failed connection_made
    assert worker.connections == set() and worker.stats.connections_open == 0
    server.close()
    client.close()


def test_a_long_url_is_checked_once_per_connection_not_per_request(
    loop: asyncio.AbstractEventLoop, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A URL longer than the per-connection memory takes is still remembered as the last one:
    a player repeating it for every range costs one token lookup, not one per request."""
    ring = Keyring(keys={"k1": bytes.fromhex(new_key())}, current="k1")
    worker = FakeWorker(loop, tmp_path, keyring=ring)
    worker.add_file("blob", DATA)
    lookups: list[bytes] = []
    real = tokencheck.known_expiry

    def counted(w: Any, cid: bytes, query: bytes, peer: str) -> float:
        lookups.append(cid)
        return real(w, cid, query, peer)

    monkeypatch.setattr(tokencheck, "known_expiry", counted)
    client = Client(worker)
    try:
        long_url = f"/c/blob?{signed_query(ring, 'blob', int(time.time()) + 60)}&pad={'a' * 600}"
        for i in range(5):
            rng = f"Range: bytes={i}-{i + 9}"
            assert client.get(get(long_url, rng)) == (206, mock.ANY, DATA[i : i + 10])
        # The general path verified it, the fast path looked it up once, then remembered it.
        assert len(lookups) == 3, lookups
    finally:
        client.close()
