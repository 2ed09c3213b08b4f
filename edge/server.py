"""The edge data path: one asyncio Protocol per connection, httptools to parse, sendfile to send.

Per request the work is a dictionary lookup, an LMDB read, an HMAC, the pure decision of
`edge.plan` (conditionals, ranges, header bytes, body segments), and the connection's sender
(`edge.sender`) writing one header and one `sendfile`. Nothing per request goes through a thread
pool. The protocol sees its worker through `edge.server_state.ServerState`.

The request nearly every player makes (GET /c/{id}, a token already verified, no precondition,
no Range or one `bytes=first-[last]`, descriptor cached) takes `_fast_path`: the same header
templates and the same sender, with no Request object and no output queue. Everything else is
planned as a `Response` value (`_handle`) and handed to the sender.

Connection states (`ConnState`; each state's timeout is checked once a second by the worker's
sweep, see `edge.worker`). A request is *queued* while `queue` holds it and *sending* while the
sender's `out` holds its bytes: those two phases are read from the queues, not stored twice.

    IDLE ──first byte──▶ PARSING ──message complete──▶ (queued ──▶ sending) ──done──▶ IDLE
     └ keep_alive_timeout_s  └ header_timeout_s                   └ send_timeout_s
    any ──Connection: close answered, bad request, drain──▶ LINGER ──EOF or LINGER_S──▶ closed
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from bisect import bisect_left
from collections import deque
from enum import IntEnum
from typing import Any, Final

import httptools

from edge import routes, tokencheck
from edge.fdcache import OpenFile
from edge.metrics import LATENCY_BUCKETS
from edge.plan import HEAD_200, HEAD_206, Response, plan_reply
from edge.ranges import SINGLE_RANGE_BYTES
from edge.request import (
    CONNECTION_NAMES,
    CONTENT_ID_B,
    WANTED,
    WANTED_LENGTHS,
    RejectRequest,
    Request,
)
from edge.responses import CLOSE, KEEP_ALIVE, TEXT
from edge.sender import BLOCKED, DONE, PlainSender, Sender
from edge.server_state import ServerState

LINGER_S: Final = 2.0
# URLs remembered per connection by the fast path: a few, short (a signed URL is ~100 bytes),
# so that a connection holds at most 4 KiB of them.
KNOWN_TARGETS_MAX: Final = 8
KNOWN_TARGET_MAX_BYTES: Final = 512


class ConnState(IntEnum):
    """Which timeout a connection's clock counts for (see the module docstring).

    Compared with `is` (members are singletons): an identity test costs less than `==` on an
    int subclass, which CPython does not specialise, and the state is tested three times per
    request."""

    IDLE = 0  # between requests: keep_alive_timeout_s (or send_timeout_s while sending)
    PARSING = 1  # a request's head is arriving: header_timeout_s
    LINGER = 2  # half-closed after the last response, discarding input: LINGER_S


IDLE: Final = ConnState.IDLE
PARSING: Final = ConnState.PARSING
LINGER: Final = ConnState.LINGER


class EdgeProtocol(asyncio.Protocol):
    """One client connection."""

    def __init__(self, worker: ServerState) -> None:
        self.worker = worker
        self.loop = worker.loop
        self.limits = worker.config.limits
        self.max_header_bytes = self.limits.max_header_bytes  # read for every header line
        # Per-connection state
        self.transport: Any = None
        self.sender: Sender = PlainSender(worker.loop, worker, self._on_writable)
        self.out = self.sender.out  # not empty while a response is in flight
        self.peer = "-"
        self.parser = httptools.HttpRequestParser(self)
        self.queue: deque[Request | tuple[int, str]] = deque()
        self.state = IDLE
        self.since = time.monotonic()  # when the current state began
        self.closed = False
        self.opened = False  # counted by the worker: connection_lost must uncount it
        self.peer_eof = False
        self.parse_failed = False
        self.reading_paused = False
        self.draining = False
        self.delaying = False  # a fault-delay timer is pending (see _next)
        # Per-request state (parsing)
        self.url = b""
        self.headers: dict[bytes, bytes] = {}
        self.header_bytes = 0
        self.conditional = False
        self.saw_connection = False  # a Connection header: the HTTP version decides
        # The URLs the fast path accepted on this connection, each with its content id and its
        # token's expiry, valid while the worker's tokens_seen is the one they were found in.
        self.known_targets: dict[bytes, tuple[bytes, float]] = {}
        self.known_seen: dict[tuple[bytes, bytes, str], int] | None = None
        self.last_target = b""  # the previous request's URL, and what is known of it
        self.last_known: tuple[bytes, float] | None = None
        self.began = 0.0  # monotonic time the current request began
        self.reject_status = 0
        self.in_head = False
        self.head_raw = 0  # bytes of a head still unfinished after whole chunks; -1: began now
        # Per-response state (the bytes themselves are the sender's)
        self.resp_file: OpenFile | None = None
        self.resp_status = 0
        self.resp_head_len = 0
        self.resp_req: Request | None = None
        self.resp_cid: bytes | None = None  # the content id of a file response
        self.resp_keep_alive = True

    # -- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        if not self.worker.connection_opened(self):
            transport.close()
            self.closed = True
            return
        self.opened = True  # from here on, connection_lost uncounts it whatever fails next
        sock = transport.get_extra_info("socket")
        self.sender.attach(socket.socket(fileno=os.dup(sock.fileno())))
        peer = transport.get_extra_info("peername")
        if peer:
            self.peer = peer[0]
            if self.peer.startswith("::ffff:"):
                self.peer = self.peer[7:]

    def connection_lost(self, exc: Exception | None) -> None:
        # The parser holds this protocol's callbacks: drop it so that a closed connection is
        # freed by its reference count at once, not left as a cycle for the collector.
        # (asyncio calls connection_lost once, and no parser callback comes after it.)
        del self.parser
        if not self.opened:
            self.sender.close()  # refused in connection_made: drop the sender's callback too
            return
        self.closed = True
        if self.resp_file is not None:
            if self.out:
                self.worker.stats.error("client_gone")
            self.resp_file.release()
            self.resp_file = None
        self.sender.close()
        self.queue.clear()
        self.worker.connection_closed(self)

    def eof_received(self) -> bool:
        # The client half-closed: finish what it asked for, then close (RFC 9112 §9.6).
        self.peer_eof = True
        if self.state is LINGER:
            self.closed = True
            self.transport.close()
        elif not self.out and not self.queue:
            self._close()
        return True

    def data_received(self, data: bytes) -> None:
        if self.state is LINGER or self.parse_failed:
            return  # lingering close: discard what the client still sends
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError:
            status = self.reject_status or 400
            self._fail(
                status, "request header fields too large" if status == 431 else "bad request"
            )
        except httptools.HttpParserUpgrade:
            # Upgrades are not offered: answer what was asked, say so, then close.
            for item in self.queue:
                if isinstance(item, Request):
                    item.keep_alive = False
            self.in_head = False
            self.parse_failed = True
            self._pause_reading()
        except httptools.HttpParserError:
            self._fail(400, "malformed request")
        if self.in_head and not self.parse_failed:
            # httptools reports a header only once its line ends: bound what a line that never
            # ends makes us buffer (counting whole chunks; the chunk a head began in is not).
            self.head_raw = 0 if self.head_raw < 0 else self.head_raw + len(data)
            if self.head_raw > self.max_header_bytes:
                self._fail(431, "request header fields too large")
        if self.queue and not self.out:
            self._next()

    # -- httptools callbacks ------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = {}  # a new one: a queued Request keeps the previous message's
        self.header_bytes = 0
        self.conditional = False
        self.saw_connection = False
        self.in_head = True
        self.head_raw = -1
        self.began = now = time.monotonic()
        if not self.out and self.state is not LINGER:
            self.state = PARSING
            self.since = now

    def on_url(self, url: bytes) -> None:
        self.url += url
        self.header_bytes += len(url)
        if self.header_bytes > self.max_header_bytes:
            self.reject_status = 414
            raise RejectRequest

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_bytes += len(name) + len(value) + 4
        if self.header_bytes > self.max_header_bytes:
            self.reject_status = 431
            raise RejectRequest
        if len(name) not in WANTED_LENGTHS:
            return  # Host, Accept, …: not worth a lower()
        name = name.lower()
        precondition = WANTED.get(name)
        if precondition is not None:
            if precondition:
                self.conditional = True
            headers = self.headers
            old = headers.get(name)
            # RFC 9110 §5.3: repeated fields combine into one comma-separated list.
            headers[name] = value if old is None else old + b", " + value
        elif name in CONNECTION_NAMES:
            self.saw_connection = True

    # The head is over when its body begins or the message ends. httptools calls on_body and
    # on_chunk_header only for requests with a body; on_message_complete clears it for all.
    # (No on_headers_complete: one callback per request that GETs do not need.)
    def on_body(self, body: bytes) -> None:
        self.in_head = False

    def on_chunk_header(self) -> None:
        self.in_head = False

    def on_message_complete(self) -> None:
        self.in_head = False
        if self.state is LINGER or self.closed:
            return  # closing (Connection: close answered in this same read): RFC 9112 §9.6
        parser = self.parser
        method = parser.get_method()
        keep_alive = parser.should_keep_alive()
        queue = self.queue
        tried = False
        if (
            not queue
            and not self.out
            and method == b"GET"
            and not (self.saw_connection and parser.should_upgrade())
            and not self.worker.delay_s
        ):
            # Nothing is ahead of this request: the common one is answered right here, with
            # no Request object and no queue (the fast path sends from inside the parser's
            # callback; output never depends on bytes the parser has not reached yet).
            tried = True
            try:
                if self._fast_path(self.url, self.headers, keep_alive, self.conditional, None):
                    return
            except Exception:
                self._request_failed(direct=True)
                return
        req = self._parsed_request(method, keep_alive)
        req.try_fast = not tried
        queue.append(req)
        if len(queue) >= self.limits.max_pipelined_requests:
            self._pause_reading()

    # -- requests -----------------------------------------------------------------------

    def _fail(self, status: int, message: str) -> None:
        """Queue an error reply after the requests already parsed, then close."""
        if self.state is LINGER or self.closed:
            # Bytes after a `Connection: close` that was answered in this same read: llhttp
            # refuses them, and RFC 9112 §9.6 says to ignore them, not to answer.
            return
        self.parse_failed = True
        self.worker.stats.error(f"bad_request_{status}")
        self.queue.append((status, message))
        self._pause_reading()

    def _next(self) -> None:
        """Answer queued requests in order until one has to wait for the socket."""
        if self.delaying:
            return
        while self.queue and not self.out and not self.closed:
            head = self.queue[0]
            if self.worker.delay_s and isinstance(head, Request) and not head.delayed:
                # The fault-delay switch (edge.worker.read_delay_switch): hold the answer back.
                head.delayed = True
                self.delaying = True
                self.loop.call_later(self.worker.delay_s, self._delay_over)
                return
            item = self.queue.popleft()
            if isinstance(item, tuple):
                self.resp_req = None
                self.resp_keep_alive = False
                self._reply(item[0], item[1])
            else:
                self.resp_req = item
                self.resp_keep_alive = item.keep_alive and not self.draining
                try:
                    if (
                        item.try_fast
                        and item.method == b"GET"
                        and self._fast_path(
                            item.target, item.headers, item.keep_alive, item.conditional, item
                        )
                    ):
                        continue  # sent, or queued and pumping: it took care of itself
                    self._handle(item)
                except Exception:
                    if not self._request_failed(direct=False):
                        return
            self._pump()
        if self.closed:
            return
        if not self.out and not self.queue:
            if self.parse_failed or self.peer_eof:
                self._close()
            elif self.reading_paused and not self.sender.waiting:
                self.reading_paused = False
                self.transport.resume_reading()

    def _delay_over(self) -> None:
        self.delaying = False
        if not self.closed:
            self._next()

    def _request_failed(self, direct: bool) -> bool:
        """A bug or an index failure costs this request, never the worker: a 500 when nothing
        of the response is out yet (True), else the connection is cut (False). *direct*: it
        was raised in the parser callback, where no _next loop will pump the 500."""
        self.worker.internal_error()
        self.out.clear()
        self.resp_cid = None
        if self.resp_file is not None:
            self.resp_file.release()
            self.resp_file = None
        if self.sender.sent or self.closed:
            self._abort()  # part of a response is out: a 500 would corrupt it
            return False
        self.resp_keep_alive = False
        self._reply(500, "internal error")
        if direct:
            self._pump()
        return True

    def _fast_path(
        self,
        target: bytes,
        headers: dict[bytes, bytes],
        keep_alive: bool,
        has_conditional: bool,
        req: Request | None,
    ) -> bool:
        """The request nearly every player makes — GET /c/{id}, a token already verified, no
        precondition, no Range or one `bytes=first-[last]` inside the file, descriptor cached —
        answered with no general machinery. False sends the request down the general path
        (`_handle`), which is the reference: property tests cover both with one oracle.

        *req* is None when called from the parser callback (the request's fields are still
        in `self`); a Request is made only if the response cannot be finished at once."""
        if has_conditional:
            return False
        worker = self.worker
        # A player asks for many ranges of a few URLs on one connection: their ids and tokens
        # were checked for an earlier request (a key reload replaces tokens_seen).
        if self.known_seen is not worker.tokens_seen:
            known = None
        elif target == self.last_target:
            known = self.last_known  # the same URL as the previous request: the common case
        else:
            known = self.known_targets.get(target)
            self.last_target = target
            self.last_known = known
        if known is None:
            path, _, query = target.partition(b"?")
            if path[:3] != b"/c/":
                return False
            cid = path[3:]
            if CONTENT_ID_B.fullmatch(cid) is None:  # also refuses "/": the path form
                return False
            expiry = tokencheck.known_expiry(worker, cid, query, self.peer)
            if not expiry:
                return False
            known = (cid, expiry)
            targets = self.known_targets
            if self.known_seen is not worker.tokens_seen:
                self.known_targets = targets = {}
                self.known_seen = worker.tokens_seen
            # A longer URL is remembered as the last one only (it repeats on its connection).
            if len(target) <= KNOWN_TARGET_MAX_BYTES:
                if len(targets) >= KNOWN_TARGETS_MAX:
                    self.known_targets = targets = {}
                targets[target] = known
            self.last_target = target
            self.last_known = known
        cid, expiry = known
        if expiry < time.time():
            return False
        entry = worker.fdcache.hot.get(cid)
        if entry is None:
            raw = worker.view.get_raw(cid)
            if raw is None:
                return False
            entry = worker.fdcache.current(cid, raw)
            if entry is None:
                return False
        # No reference is taken unless the response outlives this call (see FdCache.current).
        size = entry.size
        keep_alive = keep_alive and not self.draining
        if keep_alive and (self.saw_connection if req is None else not req.minor):
            # HTTP/1.0 persistence must be said (RFC 9112 §9.3); the version is only asked
            # for when a Connection header makes it matter (1.0 keep-alive needs one).
            minor = req.minor if req is not None else self.parser.get_http_version() == "1.1"
            conn = b"" if minor else KEEP_ALIVE
        else:
            conn = b"" if keep_alive else CLOSE
        date = worker.date_line
        if entry.date is not date:
            entry.set_date(date)
        rng = headers.get(b"range")
        if rng is None:
            head = HEAD_200 % (entry.head200, size, conn)
            status, offset, count = 200, 0, size
        else:
            # What edge.ranges.evaluate answers with one part inside the file (the same
            # pattern); anything else is the general path's to decide.
            single = SINGLE_RANGE_BYTES.fullmatch(rng)
            first = -1 if single is None else int(single[1])
            if first < 0 or first >= size:
                return False
            last_digits = single[2]  # type: ignore[index]
            last = int(last_digits) if last_digits else size - 1
            if last < first:
                return False
            if last >= size:
                last = size - 1
            count = last - first + 1
            head = HEAD_206 % (entry.head206, first, last, size, count, conn)
            status, offset = 206, first
        sender = self.sender
        sent = sender.send_now(head, entry.fd, offset, count)
        hlen = len(head)
        if sent == hlen + count:
            # Done at once, the common case. `sent` says "a response is out" should anything
            # below raise (no 500 after it).
            sender.sent = sent
            now = time.monotonic()
            if req is None and worker.access_log is not None:
                req = self._parsed_request(b"GET", keep_alive)
            self._account(
                status, sent, count, now - (self.began if req is None else req.received), req, cid
            )
            self.since = now
            self.state = IDLE
            sender.sent = 0
            self.resp_req = None  # _next set it for a queued request; it is answered
            if not keep_alive:
                self.resp_keep_alive = False
                self._close()
            return True
        # The sender queued the rest: it goes out from the pump, later if it must.
        if req is None:
            req = self._parsed_request(b"GET", keep_alive)
        self.resp_req = req
        self.resp_keep_alive = keep_alive
        entry.refs += 1  # the rest is sent later: keep the descriptor open until then
        self.resp_file = entry
        self.resp_status = status
        self.resp_head_len = hlen
        self.resp_cid = cid
        self._pump(worker.send_chunk - max(sent - hlen, 0))
        return True

    def _parsed_request(self, method: bytes, keep_alive: bool) -> Request:
        """The Request of the message the parser just completed: its fields are still in
        `self` (made only when it must wait in the queue, be logged, or finish later)."""
        return Request(
            method,
            self.url,
            self.headers,
            keep_alive,
            1 if self.parser.get_http_version() == "1.1" else 0,
            self.began,
            self.conditional,
        )

    def _handle(self, req: Request) -> None:
        """The general path: plan the answer (edge.routes) and hand it to the sender."""
        answer = routes.answer(self.worker, req, self.peer, self._connection_header())
        self.resp_file = answer.file
        self.resp_cid = answer.content_id
        self._start(answer.response, -1 if answer.file is None else answer.file.fd)

    def _connection_header(self) -> bytes:
        req = self.resp_req
        if not self.resp_keep_alive:
            return CLOSE
        if req is not None and req.minor == 0:
            return KEEP_ALIVE  # HTTP/1.0 persistence must be said (RFC 9112 §9.3)
        return b""

    def _reply(
        self, status: int, message: str | bytes, extra: bytes = b"", content_type: bytes = TEXT
    ) -> None:
        """A small generated reply: errors (one line of text), health and metrics."""
        req = self.resp_req
        response = plan_reply(
            status,
            message,
            self.worker.date_line,
            self._connection_header(),
            req is not None and req.method == b"HEAD",
            extra,
            content_type,
        )
        self._start(response, -1)

    def _start(self, response: Response, fd: int) -> None:
        """Hand a planned response to the sender (the pump sends it)."""
        if response.error is not None:
            self.worker.stats.error(response.error)
        self.resp_status = response.status
        self.resp_head_len = len(response.head)
        self.sender.start(response.head, response.body, fd)

    # -- output -------------------------------------------------------------------------

    def _pump(self, budget: int = -1) -> None:
        """Let the sender write; it stops when done, when the socket is full, or after
        *budget* body bytes (default `limits.send_chunk_bytes`) in this loop turn."""
        if self.closed:
            return
        result = self.sender.pump(budget)
        if result == DONE:
            self._response_done()
        elif result == BLOCKED:
            self.since = time.monotonic()  # send_timeout_s counts from the last progress
            self._pause_reading()
        else:
            self._send_failed()

    def _on_writable(self) -> None:
        # The sender's writer callback: the socket drained.
        self._pump()
        if not self.out:
            self._next()

    def _send_failed(self) -> None:
        kind = self.sender.error
        self.worker.stats.error(kind)
        if kind == "short_file" and self.resp_file is not None:
            # The file is shorter than its index record: forget the descriptor so the next
            # request reopens it (and gets a 503).
            self.worker.fdcache.invalidate(self.resp_file.record.content_id.encode())
        self._abort()

    def _response_done(self) -> None:
        now = time.monotonic()
        req = self.resp_req
        sent = self.sender.sent
        self._account(
            self.resp_status,
            sent,
            sent - self.resp_head_len,
            0.0 if req is None else now - req.received,
            req,
            self.resp_cid,
        )
        self.resp_cid = None
        if self.resp_file is not None:
            self.resp_file.release()
            self.resp_file = None
        self.resp_req = None
        self.sender.sent = 0
        self.since = now
        self.state = IDLE
        if not self.resp_keep_alive:
            self._close()

    def _account(
        self,
        status: int,
        sent: int,
        body_bytes: int,
        seconds: float,
        req: Request | None,
        cid: bytes | None,
    ) -> None:
        """Count one finished response, for every path: metrics, popularity, access log."""
        worker = self.worker
        stats = worker.stats
        counts = stats.requests
        counts[status] = counts.get(status, 0) + 1
        stats.bytes_sent += sent
        # WorkerStats.observe, inlined: this runs once per request.
        stats.latency_buckets[
            0 if seconds <= LATENCY_BUCKETS[0] else bisect_left(LATENCY_BUCKETS, seconds)
        ] += 1
        stats.latency_sum += seconds
        stats.latency_count += 1
        if cid is not None and status in (200, 206):
            served = worker.served
            served[cid] = served.get(cid, 0) + body_bytes
        if req is not None and worker.access_log is not None:
            headers = req.headers
            worker.access_log.buffer.append(
                (
                    self.peer,
                    time.time(),
                    req.method,
                    req.target,
                    status,
                    body_bytes,
                    headers.get(b"referer", b""),
                    headers.get(b"user-agent", b""),
                    req.minor,
                )
            )

    # -- closing ------------------------------------------------------------------------

    def _pause_reading(self) -> None:
        if not self.reading_paused and not self.closed:
            self.reading_paused = True
            self.transport.pause_reading()

    def _close(self) -> None:
        """Close after everything was sent: half-close, then linger to drain the client's
        pipelined bytes, so the kernel does not answer them with a RST that destroys the
        reply in flight (the "lingering close" of RFC 9112 §9.6)."""
        if self.closed or self.state is LINGER:
            return
        if self.peer_eof or self.sender.sock is None:
            self.closed = True
            self.transport.close()
            return
        self.state = LINGER
        self.since = time.monotonic()
        self.queue.clear()
        if not self.sender.shutdown_write():
            self.closed = True
            self.transport.close()
            return
        if self.reading_paused:
            self.reading_paused = False
            self.transport.resume_reading()

    def _abort(self) -> None:
        if not self.closed:
            self.closed = True
            self.sender.stop()
            self.transport.abort()

    def expire(self, now: float) -> None:
        """Called by the worker's sweep: enforce the timeout of the current state."""
        if self.closed:
            return
        limits = self.limits
        elapsed = now - self.since
        if self.state is LINGER:
            if elapsed > LINGER_S:
                self.closed = True
                self.transport.close()
        elif self.out:
            if elapsed > limits.send_timeout_s:
                self.worker.stats.error("send_timeout")
                self._abort()
        elif self.state is PARSING and (self.in_head or not self.queue):
            # (A complete request waiting in the queue, e.g. held by the fault-delay switch,
            # is not a slow header.)
            if elapsed > limits.header_timeout_s:
                self.worker.stats.error("header_timeout")
                self.parse_failed = True
                self.queue.append((408, "request header timeout"))
                self._next()
        elif not self.queue and elapsed > limits.keep_alive_timeout_s:
            self._close()

    def drain(self) -> None:
        """The worker is stopping: close when idle, else after the response in flight."""
        self.draining = True
        self.resp_keep_alive = False
        if not self.out and not self.queue and self.state is not PARSING:
            self._close()
