"""One edge worker process: its event loop, listening socket, timers, signals and drain."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import secrets
import signal
import socket
import time
from pathlib import Path

from edge.accesslog import AccessLog
from edge.config import EdgeConfig
from edge.disks import Disk, DiskError, open_disk
from edge.fdcache import FdCache, FileUnavailable
from edge.httpdate import format_http_date
from edge.index import ContentIndex
from edge.metrics import EdgeCollector, WorkerStats, render
from edge.popularity import spool_dir, write_spool
from edge.runtime import (
    fill_status_file,
    keeper_file,
    read_json,
    read_worker_snapshots,
    supervisor_file,
    worker_file,
    write_json_atomic,
)
from edge.server import EdgeProtocol
from edge.server_state import Connection
from edgefleet.models import ContentRecord
from edgefleet.tokens import Keyring, KeyringError

log = logging.getLogger("edgefleet.edge")
TICK_S = 1.0
SWEEP_SLICES = 50  # the once-a-second timeout sweep is spread over this many slices
SWEEP_MIN = 100  # ...of at least this many connections (a small worker sweeps at once)


def listen_socket(host: str, port: int) -> socket.socket:
    """A bound (not yet listening) TCP socket with SO_REUSEPORT, so every worker can bind one."""
    family, kind, proto, _, addr = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(addr)
    return sock


DELAY_SWITCH = "fault-delay-ms"


def read_delay_switch(runtime_dir: str) -> float:
    """Seconds every response is held back: the integer in `<runtime_dir>/fault-delay-ms`, or 0
    without the file. A switch for chaos drills and tests (a slow appliance); the runtime
    directory is writable only by the service's user. Read once a second, off the hot path."""
    try:
        text = Path(runtime_dir, DELAY_SWITCH).read_text().strip()
    except OSError:
        return 0.0
    return int(text) / 1000 if text.isdigit() else 0.0


class Worker:
    """State shared by the connections of one worker process."""

    def __init__(self, config: EdgeConfig, slot: int, loop: asyncio.AbstractEventLoop) -> None:
        self.config = config
        self.slot = slot
        self.loop = loop
        self.index = ContentIndex(config.index, readonly=True)
        self.view = self.index.read_view()
        self.disks: dict[str, Disk] = {}
        self.disk_state: list[tuple[str, str, int | None, int | None]] = []
        self.fdcache = FdCache(config.fd_cache_size, self._path_of, self.index.get_raw)
        self.view.on_refresh = self.fdcache.view_changed
        self.check_disks()
        self.keyring: Keyring | None = None
        if config.tokens.required:
            self.keyring = Keyring.load(config.tokens.keyring)
        else:
            log.warning("worker %d: signed URLs are DISABLED (tokens.required = false)", slot)
        # Verified tokens: (content id, query, client) → expiry; cleared when keys change.
        self.tokens_seen: dict[tuple[bytes, bytes, str], int] = {}
        self.stats = WorkerStats()
        # Where flush_served spools `served` (below) once a second for the reporter.
        self._served_dir = spool_dir(config.runtime_dir)
        self._served_seq = 0
        # Body bytes served per content id since the last spool (the fleet's own popularity):
        # the server adds to it when a content response completes (edge.popularity).
        self.served: dict[bytes, int] = {}
        # Fault injection for drills and tests (edge.server): every response waits this long.
        self.delay_s = read_delay_switch(config.runtime_dir)
        previous = read_json(worker_file(config.runtime_dir, slot))
        if previous is not None:
            self.stats.resume_from(previous)
        self.access_log = AccessLog(config.access_log) if config.access_log else None
        self.connections: set[Connection] = set()
        self.draining = False
        self.drained = asyncio.Event()
        self.use_sendfile = config.sendfile and os.environ.get("EDGEFLEET_NO_SENDFILE") != "1"
        self.coalesce_max = config.header_coalesce_max_bytes
        self.send_chunk = config.limits.send_chunk_bytes  # body bytes per connection per turn
        self.boundary = secrets.token_hex(16).encode()
        self.date_line = b""
        self._unavailable_logged: set[bytes] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._sweep: list[Connection] = []  # the connections of this second's sweep
        self._sweep_at = 0
        self._gc_started = 0.0
        self._update_date()

    # -- per-second housekeeping --------------------------------------------------------

    def start(self) -> None:
        """Begin the once-a-second sweep."""
        self._timer = self.loop.call_later(TICK_S, self._tick)

    def _tick(self) -> None:
        self._update_date()
        self.view.refresh()
        # Timeouts are checked in SWEEP_SLICES slices spread over the second, not all at once:
        # with thousands of connections open a single pass would stall every response behind
        # it once a second (measured by bench/hostile/: p99 x5 with 6,500 connections).
        self._sweep = list(self.connections)
        self._sweep_at = 0
        self._sweep_step()
        self.check_disks()
        self.delay_s = read_delay_switch(self.config.runtime_dir)
        self.flush_stats()
        self.flush_served()
        if self.access_log is not None:
            self.access_log.flush_soon(self.loop)
        if self.draining and not self.connections:
            self.drained.set()
        self._timer = self.loop.call_later(TICK_S, self._tick)

    def _sweep_step(self) -> None:
        sweep = self._sweep
        end = self._sweep_at + max(SWEEP_MIN, -(-len(sweep) // SWEEP_SLICES))
        now = time.monotonic()
        for conn in sweep[self._sweep_at : end]:
            conn.expire(now)
        self._sweep_at = end
        if end < len(sweep):
            self.loop.call_later(TICK_S / SWEEP_SLICES, self._sweep_step)
        else:
            self._sweep = []

    def gc_callback(self, phase: str, info: dict[str, int]) -> None:
        """Count the cyclic collector's runs and the time the event loop stood still in them."""
        if phase == "start":
            self._gc_started = time.perf_counter()
        elif self._gc_started:
            stats = self.stats
            stats.gc_seconds += time.perf_counter() - self._gc_started
            stats.gc_collections[info["generation"]] += 1
            self._gc_started = 0.0

    def _update_date(self) -> None:
        self.date_line = b"Date: %s\r\n" % format_http_date(time.time()).encode()

    def check_disks(self) -> None:
        """Re-read every disk's id; a disk that fails leaves service until it answers again."""
        disks: dict[str, Disk] = {}
        state: list[tuple[str, str, int | None, int | None]] = []
        for root in self.config.disks:
            try:
                disk = open_disk(root)
                free, total = disk.free_bytes(), disk.total_bytes()
            except (DiskError, OSError):
                state.append(("unknown", root, None, None))
                continue
            disks[disk.disk_id] = disk
            state.append((disk.disk_id, root, free, total))
        lost = set(self.disks) - set(disks)
        if lost:
            log.error("worker %d: disk(s) failed: %s", self.slot, ", ".join(sorted(lost)))
            self.fdcache.clear()
        self.disks = disks
        self.disk_state = state

    def _path_of(self, record: ContentRecord) -> str:
        return self.disks[record.disk_id].path_of(record.relpath)

    def flush_stats(self) -> None:
        """Write this worker's counters for /metrics (any worker may serve the scrape)."""
        try:
            write_json_atomic(worker_file(self.config.runtime_dir, self.slot), self.stats.to_json())
        except OSError as exc:
            log.warning("worker %d: cannot write metrics: %s", self.slot, exc)

    def flush_served(self) -> None:
        """Spool the bytes-served counts for the reporter, and start counting afresh."""
        if not self.served:
            return
        self._served_seq += 1
        try:
            write_spool(self._served_dir, self.slot, os.getpid(), self._served_seq, self.served)
        except OSError as exc:  # keep counting; the next tick tries again
            log.warning("worker %d: cannot spool served counts: %s", self.slot, exc)
            return
        self.served = {}

    # -- hooks for the protocol (edge.server_state.ServerState) ---------------------------

    def connection_opened(self, conn: Connection) -> bool:
        """Count a new connection; False when this worker is full (the caller closes it)."""
        stats = self.stats
        stats.connections_total += 1
        if len(self.connections) >= self.config.limits.max_connections_per_worker:
            stats.error("connection_limit")
            return False
        self.connections.add(conn)
        stats.connections_open += 1
        return True

    def connection_closed(self, conn: Connection) -> None:
        """Forget a closed connection; the last one ends a drain."""
        self.connections.discard(conn)
        self.stats.connections_open -= 1
        if self.draining and not self.connections:
            self.drained.set()

    def health(self) -> tuple[bool, str]:
        """(serving?, one line) for /healthz."""
        if self.draining:
            return False, "draining"
        if not self.disks:
            return False, "no usable disk"
        return True, "serving"

    def render_metrics(self) -> bytes:
        """Prometheus text for the whole appliance (all workers)."""
        self.flush_stats()
        runtime = self.config.runtime_dir
        try:
            index_stats: tuple[int, int] | None = self.index.stats()
        except Exception:  # a broken index must not break the scrape that reports it
            index_stats = None
        collector = EdgeCollector(
            read_worker_snapshots(runtime),
            read_json(supervisor_file(runtime)),
            index_stats,
            self.disk_state,
            self.draining,
            fill=read_json(fill_status_file(runtime)),
            keeper=read_json(keeper_file(runtime)),
        )
        return render(collector)

    def file_unavailable(self, key: bytes, exc: FileUnavailable) -> None:
        """Count and report (once per file) an indexed file that cannot be served."""
        self.stats.error(exc.kind)
        if key not in self._unavailable_logged and len(self._unavailable_logged) < 10_000:
            self._unavailable_logged.add(key)
            log.error("worker %d: %s", self.slot, exc)

    def internal_error(self) -> None:
        """Count and log an unexpected exception while answering a request."""
        self.stats.error("internal")
        log.exception("worker %d: internal error while answering a request", self.slot)

    def sendfile_unsupported(self, exc: OSError) -> None:
        """Switch this worker to the pread+send fallback."""
        log.warning("worker %d: sendfile failed (%s); using pread+send", self.slot, exc)
        self.use_sendfile = False

    # -- signals ------------------------------------------------------------------------

    def reload(self) -> None:
        """SIGHUP: reload the keyring and reopen the access log; keep serving on failure."""
        if self.config.tokens.required:
            try:
                self.keyring = Keyring.load(self.config.tokens.keyring)
                self.tokens_seen = {}  # a new object: connections' caches go stale
                log.info("worker %d: keyring reloaded", self.slot)
            except KeyringError as exc:
                log.error(
                    "worker %d: keyring NOT reloaded, keeping the old one: %s", self.slot, exc
                )
        if self.access_log is not None:
            self.access_log.reopen()

    def begin_drain(self) -> None:
        """Stop taking new requests on open connections; close each after its response."""
        self.draining = True
        for conn in list(self.connections):
            conn.drain()
        if not self.connections:
            self.drained.set()

    def close(self) -> None:
        """Final flush of counters and log."""
        if self._timer is not None:
            self._timer.cancel()
        self.stats.connections_open = 0
        self.flush_stats()
        self.flush_served()
        if self.access_log is not None:
            self.access_log.close()
        self.fdcache.clear()
        self.view.close()
        self.index.close()


async def _serve(config: EdgeConfig, slot: int, port: int, ready_fd: int) -> int:
    loop = asyncio.get_running_loop()
    worker = Worker(config, slot, loop)
    sock = listen_socket(config.listen.host, port)
    server = await loop.create_server(
        lambda: EdgeProtocol(worker), sock=sock, backlog=config.listen.backlog
    )
    stopping = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stopping.set)
    loop.add_signal_handler(signal.SIGHUP, worker.reload)
    # Held since the fork (edge.supervisor.WORKER_SIGNALS): one sent meanwhile is handled now.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, (signal.SIGTERM, signal.SIGHUP))
    worker.start()
    # Everything built so far (modules, configuration, index, keyring, and what the supervisor
    # left before the fork) lives as long as the worker: move it out of the collector's sight,
    # so that a full collection under load scans the connections, not ~100,000 start-up objects
    # (a full collection took 30-45 ms before this).
    gc.collect()
    gc.freeze()
    gc.callbacks.append(worker.gc_callback)
    os.write(ready_fd, b"R")
    os.close(ready_fd)
    await stopping.wait()
    # Drain: stop accepting, let responses in flight finish, up to the deadline.
    server.close()
    worker.begin_drain()
    try:
        await asyncio.wait_for(worker.drained.wait(), config.drain_timeout_s)
    except TimeoutError:
        log.warning(
            "worker %d: drain deadline passed, closing %d connection(s)",
            slot,
            len(worker.connections),
        )
        for conn in list(worker.connections):
            conn.transport.abort()
    worker.close()
    return 0


def run_worker(config: EdgeConfig, slot: int, port: int, ready_fd: int) -> int:
    """Entry point of a forked worker process; returns its exit code."""
    # Ctrl-C reaches the whole process group: the supervisor turns it into an orderly drain.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    loop_factory = None
    if config.uvloop:
        import uvloop

        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(_serve(config, slot, port, ready_fd))
