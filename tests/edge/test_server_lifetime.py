"""A closed connection's objects are freed by reference counting the moment it closes, not left
as a reference cycle for the garbage collector (whose pauses stop the worker's event loop),
and the live edge reports the pauses the collector does cause."""

from __future__ import annotations

import asyncio
import gc
import socket
import time
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.edge.edgeproc import EdgeProcess
from tests.edge.fakeworker import FakeWorker, connect
from tests.edge.probes import scrape, wait_until


@pytest.fixture
def no_gc() -> Iterator[None]:
    gc.collect()
    gc.disable()
    yield
    gc.enable()


@pytest.mark.usefixtures("no_gc")
def test_a_closed_connection_is_freed_without_the_collector(tmp_path: Path) -> None:
    a, b = socket.socketpair()
    loop = asyncio.new_event_loop()
    worker = FakeWorker(loop, tmp_path)
    proto, _ = connect(worker, a)
    gone = weakref.ref(proto)
    proto.connection_lost(None)
    del proto
    # Freed at once: no protocol <-> parser or protocol <-> sender cycle left behind.
    assert gone() is None
    assert worker.stats.connections_open == 0
    loop.close()
    a.close()
    b.close()


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeProcess]:
    proc = EdgeProcess(tmp_path_factory.mktemp("lifetime"), {"a.bin": b"x" * 100}, workers=1)
    yield proc.start()
    proc.stop()


def test_the_edge_reports_its_garbage_collector_pauses(edge: EdgeProcess) -> None:
    before = scrape(edge.port)
    runs = 'edgefleet_edge_gc_collections_total{generation="0"}'
    # Closed connections leave nothing for the collector (see above); a thousand held open
    # leave enough live objects for the young generation to be collected.
    held = [socket.create_connection(("127.0.0.1", edge.port), timeout=5) for _ in range(1000)]
    time.sleep(0.2)
    for sock in held:
        sock.close()
    after = wait_until(lambda: (m := scrape(edge.port))[runs] > before[runs] and m, 10, "a gc run")
    assert after["edgefleet_edge_gc_pause_seconds_total"] > before.get(
        "edgefleet_edge_gc_pause_seconds_total", 0.0
    )
