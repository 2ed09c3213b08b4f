"""Hostile and broken clients against a live edge: each is refused or cut off, never served a
lie, and the same server goes on answering a normal signed GET afterwards."""

from __future__ import annotations

import os
import select
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.edge.edgeproc import EdgeProcess, ResponseReader, request
from tests.edge.probes import assert_serves, error_count, scrape, wait_until

pytestmark = pytest.mark.slow

SMALL = os.urandom(10_000)
BIG = os.urandom(16 << 20)
FILES = {
    "small.bin": SMALL,
    "big.bin": BIG,
    "gone.bin": os.urandom(5000),
    "cut.bin": os.urandom(100_000),
    "cut-cached.bin": os.urandom(4 << 20),
}
LIMITS = """
[limits]
header_timeout_s = 1
keep_alive_timeout_s = 1
send_timeout_s = 1
"""


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeProcess]:
    """One edge with short timeouts, shared by the module (each test checks it still serves)."""
    proc = EdgeProcess(tmp_path_factory.mktemp("hostile"), FILES, extra_config=LIMITS).start()
    yield proc
    assert proc.stop() == 0


@pytest.fixture
def still_serving(edge: EdgeProcess) -> Iterator[None]:
    """After the hostile case: the same worker answers a normal signed GET correctly."""
    workers = edge.workers()
    yield
    assert_serves(edge, "small.bin", SMALL)
    assert edge.workers() == workers


@pytest.fixture(scope="module")
def fallback_edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeProcess]:
    """A twin of `edge` that sends bodies with pread+send instead of sendfile."""
    root = tmp_path_factory.mktemp("hostile-fallback")
    proc = EdgeProcess(root, FILES, extra_config="sendfile = false\n" + LIMITS).start()
    yield proc
    assert proc.stop() == 0


@pytest.fixture(params=["sendfile", "fallback"])
def file_edge(request: pytest.FixtureRequest, edge: EdgeProcess) -> Iterator[EdgeProcess]:
    """`edge` or its fallback twin, for the cases about sending files; checks it still serves."""
    chosen = edge if request.param == "sendfile" else request.getfixturevalue("fallback_edge")
    workers = chosen.workers()
    yield chosen
    assert_serves(chosen, "small.bin", SMALL)
    assert chosen.workers() == workers


def send_raw(edge: EdgeProcess, raw: bytes) -> tuple[socket.socket, ResponseReader]:
    sock = edge.connect()
    sock.sendall(raw)
    return sock, ResponseReader(sock)


def one_line(body: bytes) -> bool:
    return body.endswith(b"\n") and body.count(b"\n") == 1 and len(body) < 200


@pytest.mark.parametrize(
    "raw",
    [
        b"garbage garbage garbage\r\n\r\n",
        b"GET\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS ClientHello on the HTTP port
        b"GET /c/x HTTP/1.1\r\nHost: a\r\nContent-Length: -5\r\n\r\n",
    ],
    ids=["words", "no-target", "tls", "negative-length"],
)
@pytest.mark.usefixtures("still_serving")
def test_garbage_request_gets_400_and_close(edge: EdgeProcess, raw: bytes) -> None:
    sock, reader = send_raw(edge, raw)
    with sock:
        status, headers, body = reader.next()
        assert status == 400
        assert headers["connection"] == "close"
        assert one_line(body)
        assert reader.closed()


@pytest.mark.usefixtures("still_serving")
def test_oversized_headers_get_431(edge: EdgeProcess) -> None:
    many = "".join(f"X-Filler-{i}: {'v' * 90}\r\n" for i in range(100))
    one_big = f"X-Big: {'v' * 9000}\r\n"
    for extra in (many, one_big):
        raw = f"GET {edge.url('small.bin')} HTTP/1.1\r\nHost: a\r\n{extra}\r\n".encode()
        sock, reader = send_raw(edge, raw)
        with sock:
            status, headers, body = reader.next()
            assert status == 431
            assert headers["connection"] == "close"
            assert one_line(body)
            assert reader.closed()


@pytest.mark.usefixtures("still_serving")
def test_endless_header_line_is_refused_before_it_ends(edge: EdgeProcess) -> None:
    # A header that never ends must not be buffered until the header timeout.
    sock, reader = send_raw(edge, b"GET /c/small.bin HTTP/1.1\r\nX-Endless: ")
    with sock:
        sent = 0
        # Keep the line going (up to 1 MiB) until the server answers.
        while sent < 1 << 20 and not select.select([sock], [], [], 0.01)[0]:
            try:
                sock.sendall(b"v" * 4096)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += 4096
        sock.settimeout(5)
        status, _, body = reader.next()
        assert status == 431  # not a 408 when header_timeout_s runs out
        assert body == b"request header fields too large\n"


@pytest.mark.usefixtures("still_serving")
def test_oversized_url_gets_414(edge: EdgeProcess) -> None:
    sock, reader = send_raw(edge, f"GET /c/{'a' * 9000} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
    with sock:
        status, _, body = reader.next()
        assert status == 414
        assert one_line(body)
        assert reader.closed()


@pytest.mark.usefixtures("still_serving")
def test_slow_header_gets_408_after_header_timeout(edge: EdgeProcess) -> None:
    before = error_count(edge.port, "header_timeout")
    started = time.monotonic()
    sock, reader = send_raw(edge, b"GET /c/small.bin HTTP/1.1\r\nHost: a\r\n")
    with sock:
        sock.settimeout(10)
        status, headers, body = reader.next()
        waited = time.monotonic() - started
        assert status == 408
        assert headers["connection"] == "close"
        assert one_line(body)
        assert 0.9 < waited < 8.0  # header_timeout_s = 1 (default 10), swept once a second
        assert reader.closed()
    assert error_count(edge.port, "header_timeout") == before + 1


@pytest.mark.usefixtures("still_serving")
def test_idle_keep_alive_connection_is_closed(edge: EdgeProcess) -> None:
    # The edge's idle clock starts when it has sent the answer, after this instant and before
    # the client reads it (which on a loaded machine can be much later).
    idle_from = time.monotonic()
    sock, reader = send_raw(
        edge, f"GET {edge.url('small.bin')} HTTP/1.1\r\nHost: a\r\n\r\n".encode()
    )
    with sock:
        status, headers, body = reader.next()
        assert status == 200 and body == SMALL
        assert "connection" not in headers  # HTTP/1.1 stays open by default
        assert reader.closed(timeout=10)
        assert 0.9 < time.monotonic() - idle_from < 8.0  # keep_alive_timeout_s = 1 (default 15)


@pytest.mark.usefixtures("still_serving")
def test_connection_that_never_speaks_is_closed(edge: EdgeProcess) -> None:
    with edge.connect() as sock:
        assert ResponseReader(sock).closed(timeout=10)


@pytest.mark.parametrize(
    ("path", "statuses"),
    [
        ("/c/..%2F..", (400,)),
        ("/c/../etc/passwd", (400,)),
        ("/c/.hidden", (400,)),
        ("/c/a/b", (404,)),
        ("/c/small.bin/range/x-y", (400,)),
        (f"/c/{'a' * 200}", (400,)),
        ("/c/", (400,)),
        ("/c/%00", (400,)),
        ("/c/no-such-file", (403, 404)),
        ("/nope", (404,)),
        ("/", (404,)),
    ],
)
@pytest.mark.usefixtures("still_serving")
def test_invalid_content_ids_and_paths(
    edge: EdgeProcess, path: str, statuses: tuple[int, ...]
) -> None:
    for target in (path, path + "?e=1&k=k1&t=x"):
        status, _, body = request(edge.port, target)
        assert status in statuses, (target, status, body)
        assert one_line(body), body


@pytest.mark.usefixtures("still_serving")
def test_unknown_signed_content_is_404(edge: EdgeProcess) -> None:
    status, _, body = request(edge.port, edge.url("no-such-file"))
    assert status == 404
    assert one_line(body)


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS"])
@pytest.mark.usefixtures("still_serving")
def test_other_methods_get_405_with_allow(edge: EdgeProcess, method: str) -> None:
    status, headers, body = request(edge.port, edge.url("small.bin"), method=method)
    assert status == 405
    assert headers["allow"] == "GET, HEAD"
    assert one_line(body)


@pytest.mark.usefixtures("still_serving")
def test_post_with_body_gets_405_and_connection_stays_usable(edge: EdgeProcess) -> None:
    target = edge.url("small.bin")
    raw = (
        f"POST {target} HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
        f"GET {target} HTTP/1.1\r\nHost: a\r\n\r\n"
    ).encode()
    sock, reader = send_raw(edge, raw)
    with sock:
        assert reader.next()[0] == 405
        status, _, body = reader.next()
        assert status == 200 and body == SMALL


def test_half_closed_client_receives_the_whole_response(file_edge: EdgeProcess) -> None:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)  # many partial sends
    sock.settimeout(10)
    with sock:
        sock.connect(("127.0.0.1", file_edge.port))
        sock.sendall(f"GET {file_edge.url('big.bin')} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
        sock.shutdown(socket.SHUT_WR)
        reader = ResponseReader(sock)
        status, _, body = reader.next()
        assert status == 200
        assert body == BIG
        assert reader.closed()


def test_slow_reader_is_cut_off(file_edge: EdgeProcess) -> None:
    before = error_count(file_edge.port, "send_timeout")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    sock.settimeout(10)
    with sock:
        sock.connect(("127.0.0.1", file_edge.port))
        sock.sendall(f"GET {file_edge.url('big.bin')} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
        # Read nothing: send_timeout_s = 1, enforced by the once-a-second sweep.
        wait_until(
            lambda: error_count(file_edge.port, "send_timeout") > before, 10, "send_timeout counted"
        )
        received = 0
        try:
            while chunk := sock.recv(1 << 20):
                received += len(chunk)
        except ConnectionResetError:
            pass
        assert received < len(BIG)


def test_file_deleted_behind_the_index_is_404_unavailable(file_edge: EdgeProcess) -> None:
    before = error_count(file_edge.port, "missing_file")
    record = file_edge.records["gone.bin"]
    os.unlink(file_edge.disks[0].path_of(record.relpath))
    for _ in range(2):
        status, _, body = request(file_edge.port, file_edge.url("gone.bin"))
        assert status == 404
        assert b"unavailable" in body
        assert one_line(body)
    assert error_count(file_edge.port, "missing_file") == before + 2


def _truncate(edge: EdgeProcess, content_id: str) -> None:
    path = Path(edge.disks[0].path_of(edge.records[content_id].relpath))
    with path.open("r+b") as fh:
        fh.truncate(edge.records[content_id].size // 2)


def test_truncated_file_is_503_never_a_short_200(file_edge: EdgeProcess) -> None:
    _truncate(file_edge, "cut.bin")
    for method in ("GET", "HEAD"):
        status, _, body = request(file_edge.port, file_edge.url("cut.bin"), method=method)
        assert status == 503
        if method == "GET":
            assert b"unavailable" in body and one_line(body)
    status, _, body = request(file_edge.port, file_edge.url("cut.bin"), {"Range": "bytes=0-99"})
    assert status == 503


def test_file_truncated_while_its_descriptor_is_cached(file_edge: EdgeProcess) -> None:
    data = FILES["cut-cached.bin"]
    assert_serves(file_edge, "cut-cached.bin", data)  # the worker now holds the file open
    _truncate(file_edge, "cut-cached.bin")
    # The response already under way cannot become a 503: the header left with the first
    # bytes. It must be cut short (the client sees Content-Length unmet), never completed.
    try:
        status, _, body = request(file_edge.port, file_edge.url("cut-cached.bin"))
    except ConnectionError:
        assert error_count(file_edge.port, "short_file") >= 1
    else:
        assert status == 503, (status, len(body))
    # Once the server has seen the short file, it stops serving it.
    status, _, body = request(file_edge.port, file_edge.url("cut-cached.bin"))
    assert status == 503
    assert b"unavailable" in body


def test_connection_limit_per_worker(edge_factory: Callable[..., EdgeProcess]) -> None:
    edge = edge_factory(
        {"small.bin": SMALL}, extra_config="[limits]\nmax_connections_per_worker = 5\n"
    )
    held = []
    try:
        for _ in range(5):
            sock, reader = send_raw(
                edge, f"GET {edge.url('small.bin')} HTTP/1.1\r\nHost: a\r\n\r\n".encode()
            )
            held.append(sock)
            assert reader.next()[0] == 200  # accepted and counted by the worker
        sock, reader = send_raw(edge, b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
        with sock:
            assert reader.closed()  # the sixth: closed without a response
    finally:
        held.pop().close()
    # One slot is free again once the worker sees that close.
    wait_until(lambda: _try_metrics(edge), 5, "a free connection slot")
    for sock in held:
        sock.close()
    samples = scrape(edge.port)
    assert samples['edgefleet_edge_errors_total{kind="connection_limit"}'] >= 1
    assert_serves(edge, "small.bin", SMALL)


def _try_metrics(edge: EdgeProcess) -> bool:
    try:
        scrape(edge.port)
    except (ConnectionError, ValueError, IndexError):
        return False
    return True


@pytest.mark.usefixtures("still_serving")
def test_range_abuse_is_refused_with_416_not_answered_with_the_whole_file(
    edge: EdgeProcess,
) -> None:
    """The "Apache Killer" shapes (RFC 9110 §15.5.17): 1,100 overlapping ranges, or two that
    add up to more than the file, get a one-line 416 instead of 16 MiB, are counted as
    range_refused, and the connection stays open for the player's next request."""
    before = error_count(edge.port, "range_refused")
    url = edge.url("big.bin")
    many = "bytes=0-," + ",".join(f"5-{i}" for i in range(1100))
    with edge.connect() as sock:
        reader = ResponseReader(sock)
        for header in (many, "bytes=0-,0-"):
            sock.sendall(f"GET {url} HTTP/1.1\r\nHost: a\r\nRange: {header}\r\n\r\n".encode())
            status, headers, body = reader.next()
            assert status == 416
            assert headers["content-range"] == f"bytes */{len(BIG)}"
            assert one_line(body)
        # The same connection then plays a normal range.
        sock.sendall(f"GET {url} HTTP/1.1\r\nHost: a\r\nRange: bytes=0-99\r\n\r\n".encode())
        status, _, body = reader.next()
        assert (status, body) == (206, BIG[:100])
    wait_until(lambda: error_count(edge.port, "range_refused") >= before + 2, 5, "range_refused x2")
