"""What a connection (`edge.server.EdgeProtocol`) uses of its worker: a typed interface.

`edge.worker.Worker` is the real one; tests use a typed fake (`tests/edge/fakeworker.py`).
The connection never imports the worker (which imports the connection to create it), so the
two depend on this module, not on each other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from edge.sender import SendSwitches

if TYPE_CHECKING:
    import asyncio

    from edge.accesslog import AccessLog
    from edge.config import EdgeConfig
    from edge.fdcache import FdCache, FileUnavailable
    from edge.metrics import WorkerStats
    from edgefleet.tokens import Keyring


class RawRecords(Protocol):
    """Index records by content id (`edge.index.ReadView`)."""

    def get_raw(self, key: bytes) -> bytes | None:
        """The packed record of *key*, None when the index has none."""


class Connection(Protocol):
    """What the worker asks of a connection (`edge.server.EdgeProtocol`)."""

    transport: Any  # aborted when the drain deadline passes

    def expire(self, now: float) -> None:
        """Enforce the timeout of the connection's current state."""

    def drain(self) -> None:
        """Close when idle, else after the response in flight."""


class ServerState(SendSwitches, Protocol):
    """The worker as its connections see it: shared state, counters and a few hooks."""

    loop: asyncio.AbstractEventLoop
    config: EdgeConfig  # limits, tokens.require_client_binding

    # Per request: the index, open files, tokens already verified, and the Date line.
    @property
    def view(self) -> RawRecords: ...

    fdcache: FdCache
    keyring: Keyring | None  # None: tokens are not required
    tokens_seen: dict[tuple[bytes, bytes, str], int]  # (id, query, client) → expiry
    date_line: bytes
    boundary: bytes  # of multipart/byteranges
    delay_s: float  # the fault-delay switch: every response waits this long
    # Accounting
    stats: WorkerStats
    served: dict[bytes, int]  # body bytes per content id, for popularity
    access_log: AccessLog | None

    def connection_opened(self, conn: Connection) -> bool:
        """Count a new connection; False when the worker is full (then close it)."""

    def connection_closed(self, conn: Connection) -> None:
        """Forget a closed connection."""

    def health(self) -> tuple[bool, str]:
        """(serving?, one line) for /healthz."""

    def render_metrics(self) -> bytes:
        """Prometheus text for /metrics."""

    def file_unavailable(self, key: bytes, exc: FileUnavailable) -> None:
        """Count and report an indexed file that cannot be served."""

    def internal_error(self) -> None:
        """Count and log an unexpected exception while answering a request."""
