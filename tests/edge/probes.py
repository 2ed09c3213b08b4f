"""Probes for tests against a live edge: bounded polling and a /metrics scrape."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import psutil

from tests.edge.edgeproc import EdgeProcess, request

T = TypeVar("T")


def wait_until(probe: Callable[[], T], timeout: float, what: str, step: float = 0.05) -> T:
    """Call *probe* until it returns something truthy; fail naming *what* after *timeout* s."""
    deadline = time.monotonic() + timeout
    last: T = probe()
    while not last:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")
        time.sleep(step)
        last = probe()
    return last


def scrape(port: int) -> dict[str, float]:
    """/metrics as {'name{labels}': value} (Prometheus text, comments dropped)."""
    status, _, body = request(port, "/metrics")
    assert status == 200, body
    samples: dict[str, float] = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def error_count(port: int, kind: str) -> float:
    """edgefleet_edge_errors_total for *kind* (0 when never counted)."""
    return scrape(port).get(f'edgefleet_edge_errors_total{{kind="{kind}"}}', 0.0)


def assert_serves(edge: EdgeProcess, content_id: str, data: bytes) -> None:
    """A normal signed GET on a fresh connection returns exactly *data*."""
    status, _, body = request(edge.port, edge.url(content_id))
    assert status == 200, body[:200]
    assert body == data


def gone(pid: int) -> bool:
    """The process has exited (reaped, or a zombie). Checked in one step: a process reaped
    between "does it exist" and "what is its state" is gone, not an error."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
