"""Service processes in tests: wait for the "serving on URL" line every edgefleet server
prints, and stop them (reaped, never left behind)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
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


def terminate(
    popen: subprocess.Popen[str],
    timeout: float,
    *,
    sig: int = signal.SIGTERM,
    group: bool = False,
    stragglers: Callable[[], list[int]] = list,
) -> int:
    """Signal a service (its whole process group with *group*), wait, SIGKILL it and any
    *stragglers* (pids) if it hangs, close its stdout; returns the exit code."""
    if popen.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(popen.pid, sig)
            else:
                popen.send_signal(sig)
        try:
            popen.wait(timeout)
        except subprocess.TimeoutExpired:
            for pid in stragglers():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            popen.kill()
            popen.wait()
    if popen.stdout is not None:
        popen.stdout.close()
    return popen.returncode
