"""Hostile clients against one live edge while a normal player measures its latency (the fast
version of bench/hostile/): slowloris, slow read, Range abuse and idle connections.

For each attack: the normal client's p99 for 64 KiB ranges stays within 2x its unloaded p99
plus an absolute floor of 10 ms (two noisy shared cores: a single scheduler hiccup is a few
ms, and other engineers' tests run beside these), the edge's RSS (supervisor + worker) stays
under its unloaded RSS + 64 MiB (a few hundred connections hold kilobytes each: 64 MiB only
trips on a per-connection leak or buffering a whole file), the attackers' connections are cut
by the edge's own timeouts, and the worker survives.
"""

from __future__ import annotations

import os
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator

import psutil
import pytest

from tests.edge.edgeproc import EdgeProcess, ResponseReader
from tests.edge.probes import error_count
from tests.wire import exchange

pytestmark = pytest.mark.slow

BIG = os.urandom(32 << 20)
FILES = {"big.bin": BIG}
LIMITS = """
[limits]
header_timeout_s = 2
keep_alive_timeout_s = 30
send_timeout_s = 2
"""
RANGE_BYTES = 64 << 10
ATTACK_S = 4.0
FLOOR_S = 0.010
RSS_HEADROOM = 64 << 20


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeProcess]:
    proc = EdgeProcess(tmp_path_factory.mktemp("hostile"), FILES, extra_config=LIMITS).start()
    yield proc
    assert proc.stop() == 0


def rss(edge: EdgeProcess) -> int:
    assert edge.proc is not None
    pids = [edge.proc.pid, *edge.workers()]
    return sum(psutil.Process(p).memory_info().rss for p in pids)


def player(edge: EdgeProcess, seconds: float) -> list[float]:
    """64 KiB ranges of big.bin on one keep-alive connection, for *seconds*: the latencies."""
    url = edge.url("big.bin").encode()
    times = []
    with edge.connect() as sock:
        reader = ResponseReader(sock)
        end = time.monotonic() + seconds
        i = 0
        while time.monotonic() < end:
            first = (i * RANGE_BYTES * 7) % (len(BIG) - RANGE_BYTES)
            req = b"GET %s HTTP/1.1\r\nHost: a\r\nRange: bytes=%d-%d\r\n\r\n" % (
                url,
                first,
                first + RANGE_BYTES - 1,
            )
            began = time.perf_counter()
            sock.sendall(req)
            status, _, body = reader.next()
            times.append(time.perf_counter() - began)
            assert status == 206 and body == BIG[first : first + RANGE_BYTES]
            i += 1
    return times


def p99(times: list[float]) -> float:
    return statistics.quantiles(times, n=100)[98]


# -- attackers: each runs until *stop* is set, returns how many connections it opened -------


def slowloris(edge: EdgeProcess, stop: threading.Event, n: int = 200) -> int:
    socks = []
    for _ in range(n):
        sock = edge.connect()
        sock.sendall(b"GET /c/big.bin HTTP/1.1\r\nHost: a\r\n")
        socks.append(sock)
    opened = n
    while not stop.wait(0.5):
        for i, sock in enumerate(socks):
            try:
                sock.sendall(b"X")  # a header byte now and then: never a complete head
            except OSError:
                sock.close()  # cut by header_timeout_s: come back, as slowloris does
                socks[i] = edge.connect()
                socks[i].sendall(b"GET /c/big.bin HTTP/1.1\r\nHost: a\r\n")
                opened += 1
    for sock in socks:
        sock.close()
    return opened


def slow_read(edge: EdgeProcess, stop: threading.Event, n: int = 40) -> int:
    socks = []
    req = b"GET %s HTTP/1.1\r\nHost: a\r\n\r\n" % edge.url("big.bin").encode()
    for _ in range(n):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", edge.port))
        sock.sendall(req)  # and never read
        socks.append(sock)
    stop.wait()
    for sock in socks:
        sock.close()
    return n


def range_abuse(edge: EdgeProcess, stop: threading.Event) -> int:
    """Hundreds of overlapping tiny ranges (the 2011 "Apache Killer" shape), again and again."""
    rng = ",".join(f"0-{i}" for i in range(1, 600)).encode()
    req = b"GET %s HTTP/1.1\r\nHost: a\r\nRange: bytes=%s\r\nConnection: close\r\n\r\n" % (
        edge.url("big.bin").encode(),
        rng[:7000],
    )
    opened = 0
    # Paced at ~100 connections/s: the attacker shares the test process (and its GIL) with the
    # player, and an unpaced loop would measure Python in this process, not the edge.
    while not stop.wait(0.01):
        with socket.create_connection(("127.0.0.1", edge.port), timeout=10) as sock:
            sock.sendall(req)
            sock.recv(4096)  # read the head only, then drop the connection
        opened += 1
    return opened


def idle(edge: EdgeProcess, stop: threading.Event, n: int = 300) -> int:
    socks = [edge.connect() for _ in range(n)]
    stop.wait()
    for sock in socks:
        sock.close()
    return n


ATTACKS: dict[str, Callable[[EdgeProcess, threading.Event], int]] = {
    "slowloris": slowloris,
    "slow-read": slow_read,
    "range-abuse": range_abuse,
    "idle": idle,
}


@pytest.fixture(scope="module")
def unloaded(edge: EdgeProcess) -> tuple[float, int]:
    """The normal client's p99 and the edge's RSS with no attack."""
    player(edge, 1.0)  # warm the descriptor cache and the page cache
    return p99(player(edge, 3.0)), rss(edge)


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_normal_client_keeps_its_latency_under_attack(
    edge: EdgeProcess, unloaded: tuple[float, int], attack: str
) -> None:
    base_p99, base_rss = unloaded
    workers = edge.workers()
    stop = threading.Event()
    opened: list[int] = []
    thread = threading.Thread(target=lambda: opened.append(ATTACKS[attack](edge, stop)))
    timeouts_before = error_count(edge.port, "header_timeout") + error_count(
        edge.port, "send_timeout"
    )
    thread.start()
    try:
        time.sleep(0.5)  # let the attack build up before measuring
        times = player(edge, ATTACK_S)
        peak_rss = rss(edge)
    finally:
        stop.set()
        thread.join(30)
    assert opened and opened[0] > 0
    assert p99(times) <= 2 * base_p99 + FLOOR_S, (attack, p99(times), base_p99)
    assert peak_rss <= base_rss + RSS_HEADROOM, (attack, peak_rss, base_rss)
    assert edge.workers() == workers
    if attack in ("slowloris", "slow-read"):
        # the edge's own timeouts cut the attackers (header_timeout_s / send_timeout_s = 2)
        after = error_count(edge.port, "header_timeout") + error_count(edge.port, "send_timeout")
        assert after > timeouts_before, attack
    stream, _ = exchange(edge.port, b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
    assert stream.startswith(b"HTTP/1.1 200")
