"""The edge process over its life: worker crash and restart, SIGTERM drain, SIGHUP reload,
systemd notifications, and refusing to start on a bad config or a missing index."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from edgefleet.tokens import Keyring, new_key
from tests.edge.edgeproc import EdgeProcess, ResponseReader, request
from tests.edge.probes import assert_serves, gone, scrape, wait_until

pytestmark = pytest.mark.slow

SMALL = os.urandom(20_000)
BIG_SIZE = 64 << 20


def big_file() -> bytes:
    # Compressible-but-not-constant, cheap to make: a misplaced block would show.
    block = os.urandom(1 << 16)
    return b"".join(i.to_bytes(4, "big") + block[4:] for i in range(BIG_SIZE >> 16))


def refused(port: int) -> bool:
    """True once nothing accepts connections on *port* any more."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def start_download(edge: EdgeProcess, content_id: str) -> tuple[socket.socket, ResponseReader]:
    """A GET whose reader has taken its header and then stops reading (the server blocks)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.settimeout(20)
    sock.connect(("127.0.0.1", edge.port))
    sock.sendall(f"GET {edge.url(content_id)} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
    reader = ResponseReader(sock)
    while b"\r\n\r\n" not in reader.buf:
        assert reader._fill()
    return sock, reader


def finish_download(reader: ResponseReader) -> tuple[int, dict[str, str], bytes]:
    reader.sock.settimeout(30)
    return reader.next()


def wait_exit(edge: EdgeProcess, timeout: float = 30.0) -> int:
    assert edge.proc is not None
    return edge.proc.wait(timeout)


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


def test_healthz_says_draining_to_a_request_begun_before_sigterm(
    edge_factory: Callable[..., EdgeProcess],
) -> None:
    data = big_file()
    edge = edge_factory({"big.bin": data, "small.bin": SMALL})
    sock, reader = start_download(edge, "big.bin")
    with sock, edge.connect() as probe:
        probe.sendall(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
        probe_reader = ResponseReader(probe)
        status, _, body = probe_reader.next()
        assert (status, body) == (200, b"serving\n")
        # A keep-alive request under way when the drain starts is still answered.
        probe.sendall(b"GET /healthz HTTP/1.1\r\n")
        # One more round trip to the (single) worker: it has read the partial request by now.
        assert request(edge.port, "/healthz")[0] == 200
        edge.signal(signal.SIGTERM)
        wait_until(lambda: refused(edge.port), 10, "new connections to be refused")
        probe.sendall(b"Host: a\r\n\r\n")
        status, headers, body = probe_reader.next()
        assert (status, body) == (503, b"draining\n")
        assert headers["connection"] == "close"
        assert probe_reader.closed()
        status, _, body = finish_download(reader)
        assert status == 200
        assert hashlib.sha256(body).digest() == hashlib.sha256(data).digest()
    assert wait_exit(edge) == 0


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


# -- SIGHUP -------------------------------------------------------------------------------


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def test_sighup_reloads_a_rotated_keyring(edge_factory: Callable[..., EdgeProcess]) -> None:
    edge = edge_factory({"small.bin": SMALL}, workers=2)
    old = edge.keyring
    old_url = edge.url("small.bin")
    assert_serves(edge, "small.bin", SMALL)
    new = Keyring(keys={"k2": bytes.fromhex(new_key())}, current="k2")
    _write_atomic(edge.keyring_path, new.dumps())
    edge.keyring = new
    edge.signal(signal.SIGHUP)
    wait_until(lambda: edge.stderr().count("keyring reloaded") == 2, 10, "both workers to reload")
    for _ in range(10):  # fresh connections: both workers answer
        assert_serves(edge, "small.bin", SMALL)
        status, _, body = request(edge.port, old_url)
        assert (status, body) == (403, b"unknown signing key\n")
    assert old.current not in new.keys
    # And a broken keyring on the next SIGHUP keeps the one in use.
    edge.keyring_path.write_text("current = \n")
    edge.signal(signal.SIGHUP)
    wait_until(
        lambda: edge.stderr().count("keyring NOT reloaded") == 2, 10, "both workers to refuse"
    )
    for _ in range(10):
        assert_serves(edge, "small.bin", SMALL)
    assert len(edge.workers()) == 2


def test_a_removed_key_stops_a_url_on_a_connection_that_already_used_it(
    edge_factory: Callable[..., EdgeProcess],
) -> None:
    """The fast path remembers the last URL a connection had accepted; a reload that drops
    its key must still refuse that URL on the very same connection."""
    edge = edge_factory({"small.bin": SMALL}, workers=1)
    old_url = edge.url("small.bin")
    with edge.connect() as sock:
        reader = ResponseReader(sock)
        for _ in range(3):  # the first verifies the token, the next ones take the fast path
            sock.sendall(f"GET {old_url} HTTP/1.1\r\nHost: e\r\nRange: bytes=0-9\r\n\r\n".encode())
            status, _, body = reader.next()
            assert (status, body) == (206, SMALL[:10])
        new = Keyring(keys={"k2": bytes.fromhex(new_key())}, current="k2")
        _write_atomic(edge.keyring_path, new.dumps())
        edge.signal(signal.SIGHUP)
        wait_until(lambda: "keyring reloaded" in edge.stderr(), 10, "the worker to reload")
        sock.sendall(f"GET {old_url} HTTP/1.1\r\nHost: e\r\nRange: bytes=0-9\r\n\r\n".encode())
        status, _, body = reader.next()
        assert (status, body) == (403, b"unknown signing key\n")


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


# -- refusing to start --------------------------------------------------------------------


def _serve_once(edge: EdgeProcess) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgefleet.cli", "edge", "serve", "-c", str(edge.config_path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ("bogus_key = 1", "'bogus_key'"),
        ("[limits]\nheader_timeot_s = 1", "'limits.header_timeot_s'"),
        ('fd_cache_size = "two"', "'fd_cache_size'"),
        ("[limits]\nsend_timeout_s = 0", "'limits.send_timeout_s'"),
    ],
    ids=["unknown-key", "unknown-nested-key", "wrong-type", "bad-value"],
)
def test_bad_config_exits_2_naming_the_key(tmp_path: Path, extra: str, named: str) -> None:
    edge = EdgeProcess(tmp_path / "edge", {"small.bin": SMALL}, extra_config=extra)
    result = _serve_once(edge)
    assert result.returncode == 2, result.stderr
    assert named in result.stderr
    assert "config error" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("broken", ["missing", "empty"])
def test_missing_index_exits_1_with_one_line(tmp_path: Path, broken: str) -> None:
    edge = EdgeProcess(tmp_path / "edge", {"small.bin": SMALL})
    shutil.rmtree(edge.root / "index")
    if broken == "empty":
        (edge.root / "index").mkdir()
    result = _serve_once(edge)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "index" in lines[0]
    assert result.stdout == ""


def test_init_prepares_an_empty_appliance_that_then_serves(tmp_path: Path) -> None:
    """A new appliance: no index, fresh disks. `edge init` makes it servable (empty, 404 for
    everything) and leaves an existing index and disk ids alone when run again."""
    edge = EdgeProcess(tmp_path / "edge", {})
    shutil.rmtree(edge.root / "index")
    shutil.rmtree(edge.root / "disk0")
    refused = _serve_once(edge)
    assert refused.returncode == 1 and "edgefleet edge init" in refused.stderr
    init = [sys.executable, "-m", "edgefleet.cli", "edge", "init", "-c", str(edge.config_path)]
    first = subprocess.run(init, capture_output=True, text=True, timeout=60, check=True)
    assert "0 files" in first.stdout
    disk_id = (edge.root / "disk0" / ".edgefleet-disk").read_text().strip()
    again = subprocess.run(init, capture_output=True, text=True, timeout=60, check=True)
    assert disk_id in again.stdout and "0 files" in again.stdout
    edge.start()
    try:
        status, _, body = request(edge.port, edge.url("small.bin"))
        assert (status, body) == (404, b"no such content\n")
    finally:
        edge.stop()


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


def test_the_fault_delay_switch_slows_every_response_until_removed(
    edge_factory: Callable[..., EdgeProcess],
) -> None:
    """Chaos drills make one appliance slow by writing <runtime_dir>/fault-delay-ms."""
    edge = edge_factory({"small.bin": SMALL})
    switch = edge.root / "run" / "fault-delay-ms"

    def elapsed() -> float:
        start = time.monotonic()
        status, _, body = request(edge.port, edge.url("small.bin"))
        assert (status, body) == (200, SMALL)
        return time.monotonic() - start

    switch.write_text("1000\n")
    wait_until(lambda: elapsed() >= 1.0, 10, "responses to be held back 1 s")
    with edge.connect() as sock:  # the fast path (a token already seen) is held back too
        reader = ResponseReader(sock)
        for _ in range(2):
            start = time.monotonic()
            sock.sendall(f"GET {edge.url('small.bin')} HTTP/1.1\r\nHost: e\r\n\r\n".encode())
            assert reader.next()[0] == 200
            assert time.monotonic() - start >= 1.0
    switch.unlink()
    wait_until(lambda: elapsed() < 0.5, 10, "responses to be prompt again")


def test_a_request_held_by_the_delay_switch_is_not_a_slow_header(
    edge_factory: Callable[..., EdgeProcess],
) -> None:
    """A delay longer than header_timeout_s answers the request, then keeps the connection
    (the held request once counted as a header timeout and got a 408 after its answer)."""
    edge = edge_factory({"small.bin": SMALL}, extra_config="[limits]\nheader_timeout_s = 1\n")
    (edge.root / "run" / "fault-delay-ms").write_text("2500\n")
    time.sleep(1.5)  # the switch is read once a second
    with edge.connect() as sock:
        reader = ResponseReader(sock)
        sock.sendall(f"GET {edge.url('small.bin')} HTTP/1.1\r\nHost: e\r\n\r\n".encode())
        assert reader.next()[0] == 200
        (edge.root / "run" / "fault-delay-ms").unlink()
        time.sleep(1.5)
        sock.sendall(f"GET {edge.url('small.bin')} HTTP/1.1\r\nHost: e\r\n\r\n".encode())
        assert reader.next()[0] == 200  # not a 408, and the connection is still open
    assert "header_timeout" not in json.dumps(scrape(edge.port))
