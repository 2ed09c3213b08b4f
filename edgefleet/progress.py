"""A one-line progress bar on a terminal, shared by `edgefleet edge import` and `fill run`."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import TextIO


@dataclass
class Progress:
    """A one-line progress bar on a terminal (files, bytes, rate); silent when not a tty."""

    total_bytes: int
    out: TextIO = sys.stderr
    done_bytes: int = 0
    done_files: int = 0
    _started: float = 0.0
    _last: float = 0.0

    def __post_init__(self) -> None:
        self._started = self._last = time.monotonic()

    def advance(self, nbytes: int, files: int = 0) -> None:
        self.done_bytes += nbytes
        self.done_files += files
        now = time.monotonic()
        if now - self._last >= 0.2 or self.done_bytes == self.total_bytes:
            self._last = now
            self.draw(now)

    def draw(self, now: float) -> None:
        if not self.out.isatty():
            return
        frac = self.done_bytes / self.total_bytes if self.total_bytes else 1.0
        bar = "#" * int(frac * 30)
        rate = self.done_bytes / max(now - self._started, 1e-6) / 1e6
        self.out.write(
            f"\r[{bar:<30}] {frac:6.1%} {self.done_files} files "
            f"{self.done_bytes / 1e6:,.1f} MB {rate:,.0f} MB/s"
        )
        self.out.flush()

    def finish(self) -> None:
        if self.out.isatty():
            self.draw(time.monotonic())
            self.out.write("\n")


__all__ = ["Progress"]
