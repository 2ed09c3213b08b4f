"""The minimal range server of /work/shared/PERFORMANCE.md: the floor for a Python server here.

    python -m bench.minimal_server --root DIR [--port 0] [--workers 2] [--header-separate-segment]

Serves GET /<file name> (a file directly under DIR, no query) with `Range: bytes=a-b`: an
`asyncio.Protocol` under uvloop, httptools to parse, per connection a `dup()` of the socket;
per request a dictionary lookup of the file's descriptor (opened once, never closed), a split
of the Range value, a 206 header formatted from bytes (Date computed once a second), one
`send(header, MSG_MORE)` and non-blocking `os.sendfile` on the dup'ed descriptor. On EAGAIN it
registers a writer on the dup (uvloop refuses writers on descriptors its transports own) and
pauses reading until the response is out.

No tokens, no index, no metrics, no logging, no timeouts, no validation beyond the split: a
benchmark prototype only, never a server for untrusted clients.

N worker processes each bind their own SO_REUSEPORT socket on the same port; the parent binds
one first (not listening) to learn the port when 0 is asked, prints
`minimal: serving on http://127.0.0.1:PORT` once every worker listens, and on SIGTERM (or
SIGINT) stops the workers and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import select
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Sequence
from contextlib import suppress
from email.utils import formatdate
from typing import Final, cast

import httptools
import uvloop

HOST: Final = "127.0.0.1"
MSG_MORE: Final = getattr(socket, "MSG_MORE", 0)
STOP_SIGNALS: Final = {signal.SIGTERM, signal.SIGINT}
READY_TIMEOUT_S: Final = 30.0
STOP_TIMEOUT_S: Final = 10.0

# (header, send flags, file descriptor, offset, count, keep-alive)
Response = tuple[bytes, int, int, int, int, bool]


class Worker:
    """What the connections of one process share: the root, the open files, the Date line."""

    def __init__(self, root: str, loop: asyncio.AbstractEventLoop, header_flags: int) -> None:
        self.root = root
        self.loop = loop
        self.header_flags = header_flags
        self.files: dict[bytes, tuple[int, int]] = {}  # URL path → (fd, size)
        self.date = b""
        self._tick()

    def _tick(self) -> None:
        self.date = b"Date: " + formatdate(usegmt=True).encode() + b"\r\n"
        self.loop.call_at(float(int(self.loop.time()) + 1), self._tick)

    def open(self, path: bytes) -> tuple[int, int] | None:
        """(fd, size) of /<name>, opened on first use; None if there is no such file."""
        name = path[1:].decode("latin-1")
        if not path.startswith(b"/") or not name or "/" in name or name.startswith("."):
            return None
        try:
            fd = os.open(os.path.join(self.root, name), os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        entry = (fd, os.fstat(fd).st_size)
        self.files[path] = entry
        return entry


class Connection(asyncio.Protocol):
    """One client connection: parse with httptools, answer with send + sendfile."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.loop = worker.loop
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.sock: socket.socket | None = None
        self.sockfd = -1
        self.url = b""
        self.range = b""
        self.queue: deque[Response] = deque()
        # The response being sent.
        self.head = b""
        self.flags = 0
        self.fd = -1
        self.offset = 0
        self.count = 0
        self.keep_alive = True
        self.busy = False
        self.waiting = False

    # -- asyncio.Protocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport is not a subclass of asyncio.Transport, only alike.
        self.transport = cast(asyncio.Transport, transport)
        self.sockfd = os.dup(transport.get_extra_info("socket").fileno())
        self.sock = socket.socket(fileno=self.sockfd)
        self.sock.setblocking(False)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.sock is not None:
            if self.waiting:
                self.loop.remove_writer(self.sockfd)
                self.waiting = False
            self.sock.close()
            self.sock = None
        self.queue.clear()

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._abort()
            return
        if not self.busy and self.queue:
            self._pump()

    # -- httptools callbacks ----------------------------------------------------------

    def on_message_begin(self) -> None:
        self.url = b""
        self.range = b""

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) == 5 and name.lower() == b"range":
            self.range = value

    def on_message_complete(self) -> None:
        keep_alive: bool = self.parser.should_keep_alive()
        worker = self.worker
        entry = worker.files.get(self.url) or worker.open(self.url)
        if entry is None:
            self._error(b"404 Not Found")
            return
        fd, size = entry
        if self.range:
            try:
                first_s, last_s = self.range[6:].split(b"-")
                first, last = int(first_s), min(int(last_s), size - 1)
            except ValueError:
                self._error(b"400 Bad Request")
                return
            if first > last:
                self._error(b"416 Range Not Satisfiable")
                return
            head = (
                b"HTTP/1.1 206 Partial Content\r\n%sContent-Type: application/octet-stream\r\n"
                b"Content-Length: %d\r\nContent-Range: bytes %d-%d/%d\r\n"
                b"Accept-Ranges: bytes\r\n\r\n" % (worker.date, last - first + 1, first, last, size)
            )
        else:
            first, last = 0, size - 1
            head = (
                b"HTTP/1.1 200 OK\r\n%sContent-Type: application/octet-stream\r\n"
                b"Content-Length: %d\r\nAccept-Ranges: bytes\r\n\r\n" % (worker.date, size)
            )
        self.queue.append((head, worker.header_flags, fd, first, last - first + 1, keep_alive))

    # -- output -----------------------------------------------------------------------

    def _pump(self) -> None:
        """Send queued responses until done or the socket is full."""
        sock = self.sock
        if sock is None:
            return
        try:
            while True:
                if not self.busy:
                    if not self.queue:
                        break
                    (self.head, self.flags, self.fd, self.offset, self.count,
                     self.keep_alive) = self.queue.popleft()  # fmt: skip
                    self.busy = True
                while self.head:
                    n = sock.send(self.head, self.flags)
                    self.head = self.head[n:]
                while self.count:
                    n = os.sendfile(self.sockfd, self.fd, self.offset, self.count)
                    if n == 0:  # the file is shorter than it was
                        self._abort()
                        return
                    self.offset += n
                    self.count -= n
                self.busy = False
                if not self.keep_alive:
                    self._close()
                    return
        except BlockingIOError:
            if not self.waiting:
                self.waiting = True
                self.loop.add_writer(self.sockfd, self._pump)
                assert self.transport is not None
                self.transport.pause_reading()
            return
        except OSError:
            self._abort()
            return
        if self.waiting:
            self.waiting = False
            self.loop.remove_writer(self.sockfd)
            assert self.transport is not None
            self.transport.resume_reading()

    def _error(self, status: bytes) -> None:
        """A bodiless error answer, after which the connection closes."""
        head = b"HTTP/1.1 %s\r\n%sContent-Length: 0\r\nConnection: close\r\n\r\n" % (
            status,
            self.worker.date,
        )
        self.queue.append((head, 0, -1, 0, 0, False))

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


# -- processes ------------------------------------------------------------------------------


def reuseport_socket(port: int) -> socket.socket:
    """A TCP socket bound to HOST:port with SO_REUSEPORT (not yet listening)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((HOST, port))
    return sock


def run_worker(root: str, port: int, header_flags: int, ready_fd: int) -> int:
    """One worker process: listen on its own socket, serve until SIGTERM."""
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    stopped = asyncio.Event()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stopped.set)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    worker = Worker(root, loop, header_flags)
    sock = reuseport_socket(port)
    sock.listen(4096)

    async def serve() -> None:
        server = await loop.create_server(lambda: Connection(worker), sock=sock, backlog=4096)
        os.write(ready_fd, b"R")
        os.close(ready_fd)
        await stopped.wait()
        server.close()

    loop.run_until_complete(serve())
    return 0


def spawn(root: str, port: int, header_flags: int, inherited: Sequence[int]) -> tuple[int, int]:
    """Fork a worker; returns (pid, read end of its readiness pipe)."""
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(ready_r)
            for fd in inherited:
                os.close(fd)
            code = run_worker(root, port, header_flags, ready_w)
        except BaseException as exc:
            print(f"minimal: worker failed: {exc!r}", file=sys.stderr)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    os.close(ready_w)
    return pid, ready_r


def wait_ready(pipes: Sequence[int]) -> bool:
    """True once every worker wrote its readiness byte."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    for fd in pipes:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            return False
        if os.read(fd, 1) != b"R":
            return False
    return True


def stop_workers(pids: Sequence[int]) -> int:
    """SIGTERM every worker still running, wait for them (SIGKILL after a while)."""
    status = 0
    alive = set(pids)
    for pid in alive:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while alive:
        for pid in list(alive):
            done, wstatus = os.waitpid(pid, os.WNOHANG)
            if done:
                alive.discard(pid)
                if os.waitstatus_to_exitcode(wstatus) != 0:
                    status = 1
        if alive and time.monotonic() > deadline:
            for pid in alive:
                os.kill(pid, signal.SIGKILL)
            deadline = float("inf")
            status = 1
        if alive:
            time.sleep(0.02)
    return status


def describe(status: int) -> str:
    """'exit 1' or 'killed by SIGKILL', from a wait status."""
    code = os.waitstatus_to_exitcode(status)
    return f"exit {code}" if code >= 0 else f"killed by {signal.Signals(-code).name}"


def process_name(pid: int) -> str:
    """The command line of *pid*, or '?'."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace").strip()[:200] or "?"
    except OSError:
        return "?"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    ap = argparse.ArgumentParser(prog="python -m bench.minimal_server", description=__doc__)
    ap.add_argument("--root", required=True, help="directory of the files served")
    ap.add_argument("--port", type=int, default=0, help="on 127.0.0.1 (default 0: any)")
    ap.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    ap.add_argument(
        "--header-separate-segment",
        action="store_true",
        help="send the header without MSG_MORE (its own TCP segment)",
    )
    args = ap.parse_args(argv)
    root = os.path.abspath(args.root)
    header_flags = 0 if args.header_separate_segment else MSG_MORE
    reserve = reuseport_socket(args.port)
    port: int = reserve.getsockname()[1]
    # Blocked from before the forks: the parent takes them with sigwaitinfo, each worker unblocks
    # them once its loop handles them.
    signal.pthread_sigmask(signal.SIG_BLOCK, {*STOP_SIGNALS, signal.SIGCHLD})
    pids: list[int] = []
    pipes: list[int] = []
    try:
        for _ in range(max(1, args.workers)):
            pid, ready_r = spawn(root, port, header_flags, [reserve.fileno(), *pipes])
            pids.append(pid)
            pipes.append(ready_r)
        if not wait_ready(pipes):
            print("minimal: workers did not start", file=sys.stderr)
            stop_workers(pids)
            return 1
        print(f"minimal: serving on http://{HOST}:{port} (workers: {pids})", flush=True)
        info = signal.sigwaitinfo({*STOP_SIGNALS, signal.SIGCHLD})
        if info.si_signo == signal.SIGCHLD:
            pid, status = os.waitpid(-1, os.WNOHANG)
            print(
                f"minimal: worker {pid} died ({describe(status)}); stopping the others",
                file=sys.stderr,
            )
            stop_workers([p for p in pids if p != pid])
            return 1
        if info.si_pid != os.getppid():  # not the one who started it: say who
            print(
                f"minimal: {signal.Signals(info.si_signo).name} from pid {info.si_pid} "
                f"({process_name(info.si_pid)}); stopping",
                file=sys.stderr,
            )
        return stop_workers(pids)
    finally:
        for fd in pipes:
            os.close(fd)
        reserve.close()


if __name__ == "__main__":
    sys.exit(main())
