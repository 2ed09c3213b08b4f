"""Waiting for a service's readiness line: every edgefleet server prints "serving on URL"."""

from __future__ import annotations

import re
import time
from typing import IO


def wait_for_line(
    stream: IO[str], pattern: re.Pattern[str], timeout: float
) -> re.Match[str] | None:
    """Read *stream* line by line until *pattern* matches (the match), EOF or *timeout* (None).

    A readiness signal from the process itself: never a sleep, never a port probe.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = stream.readline()
        if not line:
            return None
        match = pattern.search(line)
        if match:
            return match
    return None
