"""The access log: Combined Log Format, buffered in memory, written once a second in a thread.

The hot path appends one tuple per request; formatting and the write happen in the default
executor, so neither costs the event loop. Lines are written with one `write` per batch to a
file opened O_APPEND, so several workers can share one log file without tearing lines.
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
import time
from typing import Any

# Signed-URL tokens are bearer credentials: the log keeps the expiry and key id, not the token.
_TOKEN = re.compile(rb"([?&]t=)[^&]*")
_REDACTED = rb"\1-"

LogEntry = tuple[str, float, bytes, bytes, int, int, bytes, bytes, int]
# peer, unix time, method, target, status, body bytes, referer, user agent, http minor


def _format(entries: list[LogEntry]) -> bytes:
    lines = []
    last_sec = -1
    stamp = ""
    for peer, ts, method, target, status, nbytes, referer, agent, minor in entries:
        sec = int(ts)
        if sec != last_sec:
            last_sec = sec
            stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(sec))
        lines.append(
            f'{peer} - - [{stamp}] "{method.decode("latin-1")} '
            f'{_clean(_TOKEN.sub(_REDACTED, target))} HTTP/1.{minor}" {status} {nbytes or "-"} '
            f'"{_clean(referer) or "-"}" "{_clean(agent) or "-"}"\n'
        )
    return "".join(lines).encode("utf-8", "replace")


def _clean(raw: bytes) -> str:
    # Quotes and control bytes from a client must not forge log fields or lines; a backslash
    # is escaped too, or a client could write a literal "\x22" that reads as an escaped quote.
    text = raw.decode("latin-1")
    if text.isprintable() and '"' not in text and "\\" not in text:
        return text
    return "".join(c if c.isprintable() and c not in '"\\' else f"\\x{ord(c):02x}" for c in text)


class AccessLog:
    """A buffered access log bound to one file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.buffer: list[LogEntry] = []
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self._pending: asyncio.Future[Any] | None = None
        self._lock = threading.Lock()

    def flush_soon(self, loop: asyncio.AbstractEventLoop) -> None:
        """Hand the buffered entries to a thread that formats and writes them."""
        if not self.buffer or (self._pending is not None and not self._pending.done()):
            return
        entries, self.buffer = self.buffer, []
        self._pending = loop.run_in_executor(None, self._write, entries)

    def _write(self, entries: list[LogEntry]) -> None:
        data = _format(entries)
        # The lock orders this thread's write against close() and reopen() on the loop thread.
        with self._lock:
            if self._fd >= 0:
                os.write(self._fd, data)

    def close(self) -> None:
        """Write what is left (after any write in flight) and close the file."""
        if self.buffer:
            self._write(self.buffer)
            self.buffer = []
        with self._lock:
            os.close(self._fd)
            self._fd = -1

    def reopen(self) -> None:
        """Reopen the file (after logrotate moved it; called on SIGHUP)."""
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        with self._lock:
            old, self._fd = self._fd, fd
        os.close(old)
