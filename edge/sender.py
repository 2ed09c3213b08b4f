"""Moving a response's bytes to the client: the output queue, back-pressure and sendfile.

A connection (`edge.server`) decides what to send (`edge.plan`) and hands it to a sender, which
only moves bytes: header bytes from memory, `FileSpan`s from the file. `Sender` is the
interface; `PlainSender` writes a plain TCP socket with `os.sendfile` (or `os.pread` + `send`
where sendfile fails). A TLS sender, writing ciphertext through a non-blocking `ssl.SSLSocket`,
is a second implementation of the same interface.

`PlainSender` writes to its own `dup()` of the connection's socket, so that it can call
`os.sendfile` directly and pass MSG_MORE on a header (the header then leaves in the same segment
as the first body bytes). On EAGAIN it registers a writer on the dup'ed descriptor (uvloop
refuses writers on descriptors its transports own); the connection pauses reading meanwhile.
Never a busy loop, never a blocking call. The transport is used only for reading and closing,
and its write buffer stays empty, so bytes can never be reordered.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
from collections import deque
from collections.abc import Callable
from typing import Final, Protocol

from edge.plan import FileSpan, Segment

MSG_MORE: Final = getattr(socket, "MSG_MORE", 0)
FALLBACK_CHUNK: Final = 256 * 1024
# sendfile cannot be used on this file or socket: fall back to pread + send.
_NO_SENDFILE: Final = (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP)

# What `Sender.pump` returns.
DONE: Final = 0  # everything queued went out
BLOCKED: Final = 1  # the socket is full or this turn's budget is spent: a writer waits
FAILED: Final = 2  # the response cannot go on (`Sender.error` says why): abort the connection


class SendSwitches(Protocol):
    """The worker-wide settings a sender reads (`edge.worker.Worker` has them)."""

    use_sendfile: bool  # False after sendfile failed once: the pread fallback for all
    coalesce_max: int  # MSG_MORE on a header followed by at most this many body bytes
    send_chunk: int  # body bytes per connection per event-loop turn

    def sendfile_unsupported(self, exc: OSError) -> None:
        """sendfile failed on this system: switch the worker to the fallback."""


class Sender(Protocol):
    """What a connection asks of whatever writes its output."""

    # The segments still to send, oldest first; empty when no response is in flight. The
    # connection keeps a reference to this same deque to ask "is a response in flight?".
    out: deque[Segment]
    sock: socket.socket | None  # what is written to; None before `attach` and after `close`
    sent: int  # bytes of the current response written so far (header included)
    waiting: bool  # a writer is registered: the socket was full
    error: str  # after FAILED: the error counter to bump

    def attach(self, sock: socket.socket) -> None:
        """Write to *sock* (the sender owns and closes it)."""

    def send_now(self, head: bytes, fd: int, offset: int, count: int) -> int:
        """Try to write a whole one-part response at once; returns the bytes written. What
        is left is queued for `pump` (the caller then pumps with the rest of the budget)."""

    def start(self, head: bytes, body: tuple[Segment, ...], fd: int) -> None:
        """Queue a response: *head*, then *body*, whose `FileSpan`s are read from *fd*."""

    def pump(self, budget: int = -1) -> int:
        """Write until DONE, BLOCKED or FAILED, at most *budget* body bytes this turn."""

    def stop(self) -> None:
        """Drop what is queued and stop waiting for writability (the response is abandoned)."""

    def shutdown_write(self) -> bool:
        """Half-close the connection (the lingering close); False when that failed."""

    def close(self) -> None:
        """Stop and close the socket (the connection is gone)."""


class PlainSender:
    """Writes a plain TCP socket: `send` for header bytes, `os.sendfile` for file spans."""

    __slots__ = (
        "coalesce_max",
        "error",
        "fd",
        "loop",
        "on_writable",
        "out",
        "send_chunk",
        "sent",
        "sock",
        "sockfd",
        "switches",
        "waiting",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        switches: SendSwitches,
        on_writable: Callable[[], None],
    ) -> None:
        self.loop = loop
        self.switches = switches
        self.coalesce_max = switches.coalesce_max
        self.send_chunk = switches.send_chunk
        self.on_writable = on_writable  # called when the socket drains after BLOCKED
        self.sock: socket.socket | None = None
        self.sockfd = -1
        self.out: deque[Segment] = deque()
        self.fd = -1  # the file the queued FileSpans come from
        self.sent = 0
        self.waiting = False
        self.error = ""

    def attach(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.sockfd = sock.fileno()

    def send_now(self, head: bytes, fd: int, offset: int, count: int) -> int:
        # Almost always the socket takes it all and the response is done here, with no output
        # queue. Anything else (EAGAIN, a partial send, an error, no sendfile) leaves the rest
        # to `pump`, which knows how to wait, fall back and fail.
        sent = 0
        hlen = len(head)
        if self.switches.use_sendfile:
            try:
                sent = self.sock.send(  # type: ignore[union-attr]
                    head, MSG_MORE if 0 < count <= self.coalesce_max else 0
                )
                if sent == hlen and count:
                    sent += os.sendfile(self.sockfd, fd, offset, min(count, self.send_chunk))
            except OSError:
                pass
        if sent == hlen + count:
            return sent
        self.sent = sent
        self.fd = fd
        out = self.out
        if sent < hlen:
            out.append(head[sent:])
            if count:
                out.append(FileSpan(offset, count))
        else:
            done = sent - hlen
            out.append(FileSpan(offset + done, count - done))
        return sent

    def start(self, head: bytes, body: tuple[Segment, ...], fd: int) -> None:
        self.sent = 0
        self.fd = fd
        out = self.out
        pending = head
        for segment in body:
            if segment.__class__ is FileSpan:
                if pending:
                    out.append(pending)
                out.append(segment)
                pending = b""
            else:
                # Adjacent header bytes go out in one send (a text body, a part header).
                pending += segment  # type: ignore[operator]
        if pending:
            out.append(pending)

    def pump(self, budget: int = -1) -> int:
        """Write queued output until done, the socket is full, or *budget* body bytes (default
        `send_chunk`) went out in this call: then the rest waits for the next loop turn, behind
        every other ready connection (one fast reader, or a slow reader with an empty socket
        buffer, never holds the worker for more than one chunk)."""
        out = self.out
        sock = self.sock
        if sock is None:
            return BLOCKED
        switches = self.switches
        if budget < 0:
            budget = self.send_chunk
        while out:
            if budget <= 0:
                return self._blocked()
            chunk = out[0]
            if chunk.__class__ is FileSpan:
                offset, count = chunk.offset, chunk.count
                try:
                    if switches.use_sendfile:
                        n = os.sendfile(self.sockfd, self.fd, offset, min(count, budget))
                    else:
                        data = os.pread(self.fd, min(count, FALLBACK_CHUNK, budget), offset)
                        n = sock.send(data) if data else 0  # a partial send advances below
                except BlockingIOError:
                    return self._blocked()
                except OSError as exc:
                    if exc.errno in _NO_SENDFILE and switches.use_sendfile:
                        switches.sendfile_unsupported(exc)
                        continue
                    return self._failed(exc)
                if n == 0:
                    # The file is shorter than its index record: never pad or lie, cut off.
                    self.error = "short_file"
                    return FAILED
                self.sent += n
                budget -= n
                if n == count:
                    out.popleft()
                else:
                    chunk.offset = offset + n
                    chunk.count = count - n
            else:
                try:
                    n = sock.send(chunk, self._flags())  # type: ignore[arg-type]
                except BlockingIOError:
                    return self._blocked()
                except OSError as exc:
                    return self._failed(exc)
                self.sent += n
                if n == len(chunk):  # type: ignore[arg-type]
                    out.popleft()
                else:
                    out[0] = chunk[n:]  # type: ignore[index]
        if self.waiting:
            # The writer stayed registered while the response still had bytes to go:
            # registering and unregistering per EAGAIN costs several epoll_ctl calls each time.
            self.waiting = False
            self.loop.remove_writer(self.sockfd)
        return DONE

    def _flags(self) -> int:
        """MSG_MORE when a small file span follows, so header and body share a segment."""
        out = self.out
        if len(out) < 2:
            return 0
        follower = out[1]
        if follower.__class__ is not FileSpan:
            return MSG_MORE  # a multipart part header: always worth coalescing
        count = follower.count
        return MSG_MORE if 0 < count <= self.coalesce_max else 0

    def _blocked(self) -> int:
        if not self.waiting:
            self.waiting = True
            self.loop.add_writer(self.sockfd, self.on_writable)
        return BLOCKED

    def _failed(self, exc: OSError) -> int:
        self.error = "client_gone" if exc.errno in (errno.EPIPE, errno.ECONNRESET) else "send_error"
        return FAILED

    def stop(self) -> None:
        self.out.clear()
        if self.waiting:  # a late writable callback must not "finish" the response
            self.waiting = False
            self.loop.remove_writer(self.sockfd)

    def shutdown_write(self) -> bool:
        try:
            self.sock.shutdown(socket.SHUT_WR)  # type: ignore[union-attr]
        except OSError:
            return False
        return True

    def close(self) -> None:
        self.stop()
        # Drop the connection's callback: no protocol <-> sender cycle is left for the
        # collector (a closed connection is freed by reference counting at once).
        self.on_writable = _closed
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def _closed() -> None:
    """The writable callback of a closed sender (never registered)."""
