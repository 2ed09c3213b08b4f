"""The edge supervisor (edge/supervisor.py) over the process's life: a killed worker replaced,
SIGHUP while a worker starts, SIGTERM drain and its deadline, systemd notifications, workers
that follow a killed supervisor."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from tests.edge.edgeproc import EdgeProcess
from tests.edge.probes import assert_serves, gone, scrape, wait_until
from tests.edge.processlife import (
    SMALL,
    big_file,
    finish_download,
    refused,
    start_download,
    wait_exit,
)

pytestmark = pytest.mark.slow


# -- crash and restart --------------------------------------------------------------------


def test_killed_worker_is_replaced_and_serving_continues(
    edge_factory: Callable[..., EdgeProcess],
) -> None:
    edge = edge_factory({"small.bin": SMALL}, workers=2)
    before = edge.workers()
    assert len(before) == 2
    for _ in range(10):
        assert_serves(edge, "small.bin", SMALL)
    served = sum(v for k, v in scrape(edge.port).items() if k.startswith("edgefleet_edge_requests"))
    victim = before[0]
    os.kill(victim, signal.SIGKILL)
    wait_until(
        lambda: gone(victim),
        10,
        "the killed worker to be gone",
    )
    # The other worker serves while the supervisor replaces the dead one.
    deadline = time.monotonic() + 10
    while True:
        assert_serves(edge, "small.bin", SMALL)
        now = edge.workers()
        if len(now) == 2 and victim not in now:
            break
        assert time.monotonic() < deadline, f"no replacement worker: {now}"
    assert before[1] in now
    for _ in range(10):
        assert_serves(edge, "small.bin", SMALL)

    def restarted() -> dict[str, float]:
        samples = scrape(edge.port)
        return samples if samples.get("edgefleet_edge_worker_restarts_total", 0) >= 1 else {}

    samples = wait_until(restarted, 5, "worker_restarts_total >= 1")
    assert samples["edgefleet_edge_workers"] == 2
    # The replacement continues its predecessor's counters: they never go backwards.
    after = sum(v for k, v in samples.items() if k.startswith("edgefleet_edge_requests"))
    assert after >= served
    assert "killed by SIGKILL; restarting" in edge.stderr()


def test_sighup_while_a_worker_starts_does_not_kill_it(
    edge_factory: Callable[..., EdgeProcess],
) -> None:
    edge = edge_factory({"small.bin": SMALL})
    (victim,) = edge.workers()
    os.kill(victim, signal.SIGKILL)
    # Reload requests (logrotate, key rotation) keep coming while the supervisor replaces it.
    deadline = time.monotonic() + 10
    replacement: list[int] = []
    while not replacement or edge.stderr().count("keyring reloaded") < 3:
        edge.signal(signal.SIGHUP)
        replacement = [pid for pid in edge.workers() if pid != victim]
        assert time.monotonic() < deadline, f"no replacement worker serving: {replacement}"
        time.sleep(0.002)
    assert_serves(edge, "small.bin", SMALL)
    assert edge.workers() == replacement
    assert "killed by SIGHUP" not in edge.stderr()


# -- SIGTERM drain ------------------------------------------------------------------------


def test_sigterm_lets_a_download_in_flight_finish(
    edge_factory: Callable[..., EdgeProcess],
) -> None:
    data = big_file()
    edge = edge_factory({"big.bin": data, "small.bin": SMALL})
    sock, reader = start_download(edge, "big.bin")
    with sock:
        edge.signal(signal.SIGTERM)
        wait_until(lambda: refused(edge.port), 10, "new connections to be refused")
        status, headers, body = finish_download(reader)
        assert status == 200
        assert int(headers["content-length"]) == len(data)
        assert hashlib.sha256(body).digest() == hashlib.sha256(data).digest()
        assert reader.closed()  # drained: closed after the response, not kept alive
    assert wait_exit(edge) == 0
    assert edge.proc is not None and edge.proc.stdout is not None
    out = edge.proc.stdout.read()
    assert "draining" in out and "stopped" in out


def test_wedged_worker_is_killed_at_the_drain_deadline(
    edge_factory: Callable[..., EdgeProcess],
) -> None:
    edge = edge_factory({"small.bin": SMALL}, workers=2, extra_config="drain_timeout_s = 0.5")
    wedged, healthy = edge.workers()
    os.kill(wedged, signal.SIGSTOP)  # alive, but will never act on SIGTERM
    started = time.monotonic()
    edge.signal(signal.SIGTERM)
    # Before the deadline (drain_timeout_s + the supervisor's 5 s margin) it waits; then kills.
    assert wait_exit(edge, timeout=30) == 1
    assert time.monotonic() - started > 0.5
    assert "did not drain in time" in edge.stderr()
    assert not psutil.pid_exists(wedged) and not psutil.pid_exists(healthy)


# -- systemd ------------------------------------------------------------------------------


def test_systemd_notify_ready_watchdog_stopping(
    edge_factory: Callable[..., EdgeProcess], tmp_path: Path
) -> None:
    path = tmp_path / "notify.sock"
    address = str(path) if len(str(path)) < 100 else f"@edgefleet-test-{os.getpid()}"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(address if not address.startswith("@") else "\0" + address[1:])
    listener.settimeout(5)
    with listener:
        edge = edge_factory(
            {"small.bin": SMALL}, env={"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "1000000"}
        )
        assert edge.proc is not None
        messages: list[str] = []

        def receive_until(line: str, count: int = 1) -> None:
            deadline = time.monotonic() + 5
            while sum(m.count(line) for m in messages) < count:
                assert time.monotonic() < deadline, f"no {line!r} x{count}: {messages}"
                messages.append(listener.recv(4096).decode())

        receive_until("READY=1")
        ready = next(m for m in messages if "READY=1" in m).splitlines()
        assert f"MAINPID={edge.proc.pid}" in ready
        receive_until("WATCHDOG=1", 2)
        assert_serves(edge, "small.bin", SMALL)
        edge.signal(signal.SIGTERM)
        receive_until("STOPPING=1")
        assert wait_exit(edge) == 0


def test_workers_follow_a_killed_supervisor(edge_factory: Callable[..., EdgeProcess]) -> None:
    """SIGKILL on the supervisor must not leave orphan workers serving."""
    edge = edge_factory({"a.bin": b"x" * 1000}, workers=2)
    workers = edge.workers()
    assert len(workers) == 2
    edge.signal(signal.SIGKILL)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not all(gone(p) for p in workers):
        time.sleep(0.1)
    assert [p for p in workers if not gone(p)] == []
