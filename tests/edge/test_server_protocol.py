"""HTTP semantics through a live server: conditionals, keep-alive, pipelining, tokens, metrics."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge.httpdate import format_http_date
from edgefleet.tokens import Keyring, signed_query
from tests.edge.edgeproc import EdgeProcess, ResponseReader, request
from tests.edge.probes import error_count

DATA = os.urandom(300_000)
VIDEO = os.urandom(70_000)


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeProcess]:
    root: Path = tmp_path_factory.mktemp("protocol")
    proc = EdgeProcess(root, {"movie.mp4": VIDEO, "blob.bin": DATA}, workers=2).start()
    yield proc
    proc.stop()


def validators(edge: EdgeProcess) -> tuple[str, str]:
    _, headers, _ = request(edge.port, edge.url("blob.bin"), method="HEAD")
    return headers["etag"], headers["last-modified"]


# -- conditional requests (RFC 9110 §13) -------------------------------------------------------


def test_etag_is_the_xxh3_checksum_and_content_type_is_guessed(edge: EdgeProcess) -> None:
    _, headers, _ = request(edge.port, edge.url("movie.mp4"), method="HEAD")
    assert headers["etag"] == f'"{edge.records["movie.mp4"].checksum}"'
    assert headers["content-type"] == "video/mp4"
    assert headers["last-modified"] == format_http_date(edge.records["movie.mp4"].install_time)


def test_if_none_match_and_if_modified_since_give_304(edge: EdgeProcess) -> None:
    etag, last_modified = validators(edge)
    for headers in (
        {"If-None-Match": etag},
        {"If-None-Match": f'"nope", W/{etag}'},  # weak comparison for If-None-Match
        {"If-None-Match": "*"},
        {"If-Modified-Since": last_modified},
        {"If-Modified-Since": format_http_date(time.time() + 3600)},
    ):
        status, h, body = request(edge.port, edge.url("blob.bin"), headers)
        assert status == 304, headers
        assert body == b""
        assert h["etag"] == etag
    # If-None-Match takes precedence over If-Modified-Since (§13.2.2).
    status, _, _ = request(
        edge.port,
        edge.url("blob.bin"),
        {"If-None-Match": '"other"', "If-Modified-Since": last_modified},
    )
    assert status == 200


def test_modified_since_an_older_date_gives_200(edge: EdgeProcess) -> None:
    status, _, body = request(
        edge.port, edge.url("blob.bin"), {"If-Modified-Since": format_http_date(1_000_000)}
    )
    assert (status, body) == (200, DATA)
    # An invalid date is ignored (§13.1.3).
    status, _, _ = request(edge.port, edge.url("blob.bin"), {"If-Modified-Since": "yesterday"})
    assert status == 200


def test_if_match_and_if_unmodified_since_give_412(edge: EdgeProcess) -> None:
    etag, _ = validators(edge)
    for headers in (
        {"If-Match": '"something-else"'},
        {"If-Match": f"W/{etag}"},  # strong comparison for If-Match
        {"If-Unmodified-Since": format_http_date(1_000_000)},
    ):
        status, _, _ = request(edge.port, edge.url("blob.bin"), headers)
        assert status == 412, headers
    for headers in (
        {"If-Match": etag},
        {"If-Match": "*"},
        {"If-Unmodified-Since": format_http_date(time.time() + 60)},
    ):
        status, _, body = request(edge.port, edge.url("blob.bin"), headers)
        assert (status, body) == (200, DATA), headers


def test_if_range(edge: EdgeProcess) -> None:
    etag, last_modified = validators(edge)
    rng = {"Range": "bytes=10-19"}
    status, _, body = request(edge.port, edge.url("blob.bin"), {**rng, "If-Range": etag})
    assert (status, body) == (206, DATA[10:20])
    status, _, body = request(edge.port, edge.url("blob.bin"), {**rng, "If-Range": last_modified})
    assert (status, body) == (206, DATA[10:20])
    for stale in ('"old"', f"W/{etag}", format_http_date(1_000_000), "garbage"):
        status, _, body = request(edge.port, edge.url("blob.bin"), {**rng, "If-Range": stale})
        assert (status, body) == (200, DATA), stale


# -- connections -------------------------------------------------------------------------------


def test_keep_alive_serves_many_requests_on_one_connection(edge: EdgeProcess) -> None:
    with edge.connect() as sock:
        reader = ResponseReader(sock)
        for i in range(50):
            req = f"GET {edge.url('blob.bin')} HTTP/1.1\r\nHost: e\r\nRange: bytes={i}-{i + 9}\r\n\r\n"
            sock.sendall(req.encode())
            status, _, body = reader.next()
            assert (status, body) == (206, DATA[i : i + 10])


def test_pipelined_requests_are_answered_in_order(edge: EdgeProcess) -> None:
    url = edge.url("blob.bin")
    batch = b"".join(
        f"GET {url} HTTP/1.1\r\nHost: e\r\nRange: bytes={i * 1000}-{i * 1000 + 99_999}\r\n\r\n".encode()
        for i in range(20)
    )
    batch += f"HEAD {url} HTTP/1.1\r\nHost: e\r\n\r\n".encode()
    batch += (
        f"GET {edge.url('movie.mp4')} HTTP/1.1\r\nHost: e\r\nConnection: close\r\n\r\n".encode()
    )
    with edge.connect() as sock:
        sock.sendall(batch)
        reader = ResponseReader(sock)
        for i in range(20):
            status, _, body = reader.next()
            assert (status, body) == (206, DATA[i * 1000 : i * 1000 + 100_000])
        status, headers, body = reader.next(head=True)
        assert (status, headers["content-length"], body) == (200, str(len(DATA)), b"")
        status, headers, body = reader.next()
        assert (status, body, headers["connection"]) == (200, VIDEO, "close")
        assert reader.closed()


def test_http10_closes_unless_keep_alive_asked(edge: EdgeProcess) -> None:
    with edge.connect() as sock:
        sock.sendall(f"GET {edge.url('movie.mp4')} HTTP/1.0\r\n\r\n".encode())
        reader = ResponseReader(sock)
        status, _, body = reader.next()
        assert (status, body) == (200, VIDEO)
        assert reader.closed()
    with edge.connect() as sock:
        reader = ResponseReader(sock)
        for _ in range(2):
            sock.sendall(
                f"GET {edge.url('movie.mp4')} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n".encode()
            )
            status, headers, body = reader.next()
            assert (status, body, headers["connection"]) == (200, VIDEO, "keep-alive")


def test_request_with_body_is_answered_and_body_skipped(edge: EdgeProcess) -> None:
    with edge.connect() as sock:
        url = edge.url("movie.mp4")
        sock.sendall(
            f"GET {url} HTTP/1.1\r\nHost: e\r\nContent-Length: 5\r\n\r\nhelloGET {url} HTTP/1.1\r\nHost: e\r\n\r\n".encode()
        )
        reader = ResponseReader(sock)
        assert reader.next()[0] == 200
        assert reader.next()[2] == VIDEO


# -- signed URLs -------------------------------------------------------------------------------


def test_tokens(edge: EdgeProcess) -> None:
    ring = edge.keyring
    now = int(time.time())

    def get(query: str, cid: str = "blob.bin") -> tuple[int, bytes]:
        status, _, body = request(edge.port, f"/c/{cid}?{query}", {"Range": "bytes=0-0"})
        return status, body

    assert get(signed_query(ring, "blob.bin", now + 60))[0] == 206
    assert get(signed_query(ring, "blob.bin", now + 60, "127.0.0.1"))[0] == 206
    assert get(signed_query(ring, "blob.bin", now + 60, "127.0.0.99", prefix_len=24))[0] == 206
    cases = {
        "expired": (signed_query(ring, "blob.bin", now - 1), b"token expired"),
        "other ip": (signed_query(ring, "blob.bin", now + 60, "10.1.2.3"), b"token does not match"),
        "other content": (signed_query(ring, "movie.mp4", now + 60), b"token does not match"),
        "missing": ("", b"missing token"),
        "unknown key": (
            signed_query(Keyring({"zz": b"x" * 32}, "zz"), "blob.bin", now + 60),
            b"unknown signing key",
        ),
        "malformed": ("e=soon&k=k1&t=abc", b"malformed token"),
    }
    good = signed_query(ring, "blob.bin", now + 60)
    cases["tampered"] = (good[:-1] + ("A" if good[-1] != "A" else "B"), b"token does not match")
    cases["extended"] = (good.replace(f"e={now + 60}", f"e={now + 6000}"), b"token does not match")
    for name, (query, reason) in cases.items():
        status, body = get(query)
        assert status == 403, name
        assert body.startswith(reason), (name, body)
        assert body.count(b"\n") == 1


def test_bad_content_id_is_400_before_any_lookup(edge: EdgeProcess) -> None:
    for target in ("/c/..", "/c/.hidden", "/c/%2e%2e%2fetc", "/c/a%00b", "/c/" + "a" * 129):
        status, _, body = request(edge.port, target)
        assert status == 400, target
        assert body == b"invalid content id\n"
    status, _, body = request(edge.port, edge.url("nope.bin"))
    assert (status, body) == (404, b"no such content\n")


# -- health and metrics ------------------------------------------------------------------------


def test_healthz_and_metrics(edge: EdgeProcess) -> None:
    status, _, body = request(edge.port, "/healthz")
    assert (status, body) == (200, b"serving\n")
    request(edge.port, edge.url("blob.bin"), {"Range": "bytes=0-99"})
    # This test's own token error, so the errors line does not depend on test_tokens.
    assert request(edge.port, "/c/blob.bin")[0] == 403
    deadline = time.monotonic() + 10
    text = ""
    while time.monotonic() < deadline:  # workers publish their counters once a second
        _, headers, raw = request(edge.port, "/metrics")
        text = raw.decode()
        if (
            'edgefleet_edge_requests_total{code="206"}' in text
            and 'edgefleet_edge_errors_total{kind="token_' in text
            and "worker_restarts" in text
        ):
            break
        time.sleep(0.2)
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    for name in (
        'edgefleet_edge_requests_total{code="206"}',
        "edgefleet_edge_bytes_sent_total",
        "edgefleet_edge_request_duration_seconds_bucket",
        "edgefleet_edge_open_connections",
        "edgefleet_edge_index_files 2.0",
        "edgefleet_edge_disk_free_bytes{",
        'edgefleet_edge_errors_total{kind="token_',
        "edgefleet_edge_workers 2.0",
    ):
        assert name in text, name


def test_other_methods_are_405(edge: EdgeProcess) -> None:
    for method in ("POST", "PUT", "DELETE", "OPTIONS"):
        with socket.create_connection(("127.0.0.1", edge.port), timeout=5) as sock:
            sock.sendall(
                f"{method} {edge.url('blob.bin')} HTTP/1.1\r\nHost: e\r\nContent-Length: 0\r\n\r\n".encode()
            )
            status, headers, _ = ResponseReader(sock).next()
            assert status == 405
            assert headers["allow"] == "GET, HEAD"


def test_corrupt_index_record_is_500_and_the_worker_survives(edge_factory: Any) -> None:
    """On an edge of its own: the record it adds would change the module edge's index_files."""
    import lmdb

    edge = edge_factory({"movie.mp4": VIDEO, "blob.bin": DATA}, workers=2)
    env = lmdb.open(str(edge.root / "index"), max_dbs=4)
    try:
        with env.begin(write=True) as txn:
            txn.put(b"corrupt.bin", b"\x00garbage", db=env.open_db(b"content", txn=txn))
    finally:
        env.close()
    pids = edge.workers()
    for _ in range(4):  # reach both workers
        status, _, body = request(edge.port, edge.url("corrupt.bin"))
        assert (status, body) == (500, b"internal error\n")
    status, _, body = request(edge.port, edge.url("blob.bin"))
    assert (status, body) == (200, DATA)
    assert edge.workers() == pids


def test_upgrade_is_declined_and_the_close_announced(edge: EdgeProcess) -> None:
    """`curl --http2` over cleartext asks for h2c: answer in HTTP/1.1 and say we close."""
    with edge.connect() as sock:
        sock.sendall(
            f"GET {edge.url('movie.mp4')} HTTP/1.1\r\nHost: e\r\nConnection: Upgrade, HTTP2-Settings"
            "\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n".encode()
        )
        reader = ResponseReader(sock)
        status, headers, body = reader.next()
        assert (status, body) == (200, VIDEO)
        assert headers["connection"] == "close"
        assert reader.closed()


# -- regressions from the review of the direct (parser-callback) path ----------------------


def test_a_queued_request_keeps_its_own_headers(edge_factory: Any) -> None:
    """A fresh edge (no token seen) queues the first request; the pipelined second one's
    Range must not end up in the first one's headers (it once shared the dictionary)."""
    edge = edge_factory({"movie.mp4": VIDEO})
    url = edge.url("movie.mp4")
    with edge.connect() as sock:
        sock.sendall(
            f"GET {url} HTTP/1.1\r\nHost: e\r\n\r\n"
            f"GET {url} HTTP/1.1\r\nHost: e\r\nRange: bytes=0-99\r\n\r\n".encode()
        )
        reader = ResponseReader(sock)
        status, _, body = reader.next()
        assert (status, body) == (200, VIDEO)
        status, _, body = reader.next()
        assert (status, body) == (206, VIDEO[:100])


def test_nothing_is_answered_after_connection_close_in_the_same_read(edge: EdgeProcess) -> None:
    """RFC 9112 §9.6: after answering `Connection: close` the server closes; a request the
    client pipelined behind it is not processed."""
    url = edge.url("movie.mp4")
    with edge.connect() as sock:
        sock.sendall(f"GET {url} HTTP/1.1\r\nHost: e\r\nRange: bytes=0-9\r\n\r\n".encode())
        reader = ResponseReader(sock)
        assert reader.next()[0] == 206  # the token is seen: the next ones take the fast path
        sock.sendall(
            f"GET {url} HTTP/1.1\r\nHost: e\r\nConnection: close\r\nRange: bytes=0-9\r\n\r\n"
            f"GET {url} HTTP/1.1\r\nHost: e\r\nRange: bytes=10-19\r\n\r\n".encode()
        )
        status, headers, body = reader.next()
        assert (status, body, headers["connection"]) == (206, VIDEO[:10], "close")
        assert reader.closed()
    # The request behind it was not sent into the half-closed socket (which once counted a
    # client_gone and aborted the connection, losing the lingering close).
    time.sleep(1.2)  # worker counters reach /metrics once a second
    assert error_count(edge.port, "client_gone") == 0
    assert error_count(edge.port, "send_error") == 0


def test_http10_proxy_connection_keep_alive_is_answered_as_keep_alive(edge: EdgeProcess) -> None:
    """llhttp keeps an HTTP/1.0 connection open on Proxy-Connection: keep-alive, so the
    answer must say so (RFC 9112 §9.3), on the general path and on the fast path alike."""
    url = edge.url("movie.mp4")
    with edge.connect() as sock:
        reader = ResponseReader(sock)
        for _ in range(3):
            sock.sendall(
                f"GET {url} HTTP/1.0\r\nProxy-Connection: keep-alive\r\nRange: bytes=0-9\r\n\r\n".encode()
            )
            status, headers, body = reader.next()
            assert (status, body) == (206, VIDEO[:10])
            assert headers.get("connection", "").lower() == "keep-alive"
