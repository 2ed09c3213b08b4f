"""One worker process (edge/worker.py) in a live edge: /healthz while draining, SIGHUP reloading
the keyring (and a removed key refused on a connection that already used it), the
fault-delay switch read once a second."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from edgefleet.tokens import Keyring, new_key
from tests.edge.edgeproc import EdgeProcess, ResponseReader, request
from tests.edge.probes import assert_serves, scrape, wait_until
from tests.edge.processlife import (
    SMALL,
    big_file,
    finish_download,
    refused,
    start_download,
    wait_exit,
)

pytestmark = pytest.mark.slow


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

    def held_back() -> bool:  # the switch is read once a second: wait until it is in force
        start = time.monotonic()
        assert request(edge.port, edge.url("small.bin"))[0] == 200
        return time.monotonic() - start >= 2.5

    wait_until(held_back, 10, "responses to be held back 2.5 s")
    with edge.connect() as sock:
        reader = ResponseReader(sock)
        sock.sendall(f"GET {edge.url('small.bin')} HTTP/1.1\r\nHost: e\r\n\r\n".encode())
        assert reader.next()[0] == 200
        (edge.root / "run" / "fault-delay-ms").unlink()
        time.sleep(1.5)
        sock.sendall(f"GET {edge.url('small.bin')} HTTP/1.1\r\nHost: e\r\n\r\n".encode())
        assert reader.next()[0] == 200  # not a 408, and the connection is still open
    assert "header_timeout" not in json.dumps(scrape(edge.port))
