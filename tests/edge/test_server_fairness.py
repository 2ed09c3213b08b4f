"""One connection's body goes out at most `limits.send_chunk_bytes` per event-loop turn (the
sender's pump, edge/sender.py, driven by the connection in edge/server.py): a reader with an empty
socket buffer, fast or slow, never holds the worker for more than one chunk while other clients
wait. A real TCP pair on 127.0.0.1 and a real file; the worker is the typed fake."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.config import LimitsConfig
from edge.plan import FileSpan
from tests.edge.fakeworker import FakeWorker, connect

CHUNK = 64 * 1024
SIZE = 4 << 20


class _File:
    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.released = False

    def release(self) -> None:
        self.released = True


@pytest.fixture
def tcp_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    # Room for far more than one chunk: without the budget one send would queue megabytes.
    server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    server.setblocking(False)
    client.setblocking(False)
    yield server, client
    server.close()
    client.close()


@pytest.mark.parametrize("use_sendfile", [True, False], ids=["sendfile", "fallback"])
def test_a_body_goes_out_one_chunk_per_loop_turn(
    tmp_path: Path, tcp_pair: tuple[socket.socket, socket.socket], use_sendfile: bool
) -> None:
    server, client = tcp_pair
    data = os.urandom(SIZE)
    path = tmp_path / "body.bin"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    loop = asyncio.new_event_loop()
    try:
        worker = FakeWorker(
            loop,
            tmp_path,
            limits=LimitsConfig(send_chunk_bytes=CHUNK),
            use_sendfile=use_sendfile,
        )
        proto, _ = connect(worker, server)
        sender = proto.sender
        body = _File(fd)
        proto.resp_file = body  # type: ignore[assignment]
        proto.resp_status = 200
        sender.start(b"", (FileSpan(0, SIZE),), fd)

        proto._pump()
        # One chunk, though the socket would have taken megabytes; the rest waits its turn.
        assert sender.sent == CHUNK
        assert sender.waiting and proto.out

        got = bytearray()
        turns = 0
        complete = asyncio.Event()

        def drain() -> None:
            while True:
                try:
                    piece = client.recv(1 << 20)
                except BlockingIOError:
                    return
                got.extend(piece)
                if len(got) >= SIZE:
                    complete.set()

        loop.add_reader(client.fileno(), drain)

        async def finish() -> None:
            nonlocal turns
            while proto.out and turns < 10_000:
                turns += 1
                sent = sender.sent
                await asyncio.sleep(0)
                assert sender.sent - sent <= CHUNK  # never more than a chunk per turn
            await complete.wait()

        loop.run_until_complete(asyncio.wait_for(finish(), 30))
        loop.remove_reader(client.fileno())
        assert bytes(got) == data
        assert turns >= SIZE // CHUNK - 2  # it took a turn per chunk, give or take the ends
        assert body.released and not sender.waiting
        proto.connection_lost(None)
    finally:
        loop.close()
        os.close(fd)
