"""A typed stand-in for `edge.worker.Worker` (it implements `edge.server_state.ServerState`), and
a fake transport, for driving `EdgeProtocol` without a live edge process.

Everything a response touches is real: files on disk opened through a real `FdCache`, index
records packed by `edge.index.encode`, real `WorkerStats`, real tokens, real sockets. Only the
worker process around them (its LMDB index, disks, timers and signals) is left out.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.accesslog import AccessLog
from edge.config import EdgeConfig, LimitsConfig, TokenConfig
from edge.fdcache import FdCache, FileUnavailable
from edge.httpdate import format_http_date
from edge.index import encode
from edge.metrics import WorkerStats
from edge.server import EdgeProtocol
from edge.server_state import Connection
from edgefleet.models import ContentRecord
from edgefleet.tokens import Keyring


class FakeView:
    """Index records by content id, in a dict (`edge.index.ReadView` reads them from LMDB)."""

    def __init__(self) -> None:
        self.records: dict[bytes, bytes] = {}

    def get_raw(self, key: bytes) -> bytes | None:
        return self.records.get(key)


class FakeWorker:
    """The worker as a connection sees it, with files served from *root*."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        root: Path,
        *,
        limits: LimitsConfig | None = None,
        keyring: Keyring | None = None,
        use_sendfile: bool = True,
        coalesce_max: int = 32768,
    ) -> None:
        self.loop = loop
        self.root = root
        self.config = EdgeConfig(
            limits=limits or LimitsConfig(), tokens=TokenConfig(required=keyring is not None)
        )
        self.view = FakeView()
        self.fdcache = FdCache(16, lambda record: str(root / record.relpath))
        self.keyring = keyring
        self.tokens_seen: dict[tuple[bytes, bytes, str], int] = {}
        self.date_line = b"Date: %s\r\n" % format_http_date(time.time()).encode()
        self.boundary = b"0123456789abcdef0123456789abcdef"
        self.delay_s = 0.0
        self.stats = WorkerStats()
        self.served: dict[bytes, int] = {}
        self.access_log: AccessLog | None = None
        self.use_sendfile = use_sendfile
        self.coalesce_max = coalesce_max
        self.send_chunk = self.config.limits.send_chunk_bytes
        self.connections: set[Connection] = set()
        self.draining = False
        self.unavailable: list[bytes] = []
        self.internal_errors = 0
        self.generation = 0

    def add_file(self, content_id: str, data: bytes, content_type: str = "video/mp4") -> None:
        """Store *data* as *content_id* and index it (a new generation each time)."""
        (self.root / content_id).write_bytes(data)
        self.generation += 1
        record = ContentRecord(
            content_id=content_id,
            disk_id="d0",
            relpath=content_id,
            size=len(data),
            checksum=os.urandom(16).hex(),
            content_type=content_type,
            install_time=1_700_000_000,
            generation=self.generation,
        )
        self.view.records[content_id.encode()] = encode(record, self.generation)

    def record(self, content_id: str) -> bytes:
        return self.view.records[content_id.encode()]

    # -- ServerState hooks ------------------------------------------------------------

    def connection_opened(self, conn: Connection) -> bool:
        self.stats.connections_total += 1
        if len(self.connections) >= self.config.limits.max_connections_per_worker:
            self.stats.error("connection_limit")
            return False
        self.connections.add(conn)
        self.stats.connections_open += 1
        return True

    def connection_closed(self, conn: Connection) -> None:
        self.connections.discard(conn)
        self.stats.connections_open -= 1

    def health(self) -> tuple[bool, str]:
        return True, "serving"

    def render_metrics(self) -> bytes:
        return b"edgefleet_fake 1\n"

    def file_unavailable(self, key: bytes, exc: FileUnavailable) -> None:
        self.stats.error(exc.kind)
        self.unavailable.append(key)

    def internal_error(self) -> None:
        self.stats.error("internal")
        self.internal_errors += 1

    def sendfile_unsupported(self, exc: OSError) -> None:
        self.use_sendfile = False


@dataclass
class FakeTransport:
    """The reading side of a connection as asyncio's transport offers it to the protocol;
    the protocol's sender writes to a `dup()` of *sock* (the real socket)."""

    sock: socket.socket
    peer: tuple[str, int] = ("127.0.0.1", 40000)
    paused: bool = False
    closed: bool = False
    aborted: bool = False
    calls: list[str] = field(default_factory=list)

    def get_extra_info(self, name: str) -> Any:
        return {"socket": self.sock, "peername": self.peer}[name]

    def pause_reading(self) -> None:
        self.paused = True
        self.calls.append("pause")

    def resume_reading(self) -> None:
        self.paused = False
        self.calls.append("resume")

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True


def connect(worker: FakeWorker, sock: socket.socket) -> tuple[EdgeProtocol, FakeTransport]:
    """A protocol on the server end *sock* of a socket pair, as asyncio would make one."""
    proto = EdgeProtocol(worker)
    transport = FakeTransport(sock)
    proto.connection_made(transport)
    return proto, transport
