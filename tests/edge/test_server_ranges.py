"""Byte ranges through a live server: any file size, any Range header → RFC 9110 §14 answers.

Each property runs against two servers, one sending bodies with sendfile and one with the
pread+send fallback (STYLE.md §12), over one keep-alive connection per server.
"""

from __future__ import annotations

import itertools
import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.edge.edgeproc import EdgeProcess, ResponseReader

SIZES = {"empty": 0, "one": 1, "small": 100, "page": 4096, "odd": 65_537, "big": 1_000_003}
FILES = {name: os.urandom(size) for name, size in SIZES.items()}
SPEC_RE = re.compile(r"^\s*(\d*)-(\d*)\s*$")


class Client:
    """A keep-alive connection to one server that reconnects when the server closes."""

    def __init__(self, edge: EdgeProcess) -> None:
        self.edge = edge
        self.urls = {name: edge.url(name) for name in FILES}
        self.sock: socket.socket | None = None
        self.reader: ResponseReader | None = None

    def get(
        self, target: str, headers: dict[str, str], method: str = "GET"
    ) -> tuple[int, dict[str, str], bytes]:
        for attempt in range(2):
            if self.sock is None:
                self.sock = self.edge.connect()
                self.reader = ResponseReader(self.sock)
            lines = [f"{method} {target} HTTP/1.1", "Host: edge"]
            lines += [f"{k}: {v}" for k, v in headers.items()]
            try:
                self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
                assert self.reader is not None
                response = self.reader.next(head=method == "HEAD")
            except (ConnectionError, OSError):
                self.close()
                if attempt:
                    raise
                continue
            if response[1].get("connection") == "close":
                self.close()
            return response
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock = None


@pytest.fixture(scope="module", params=["sendfile", "fallback"])
def client(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Client]:
    env = {"EDGEFLEET_NO_SENDFILE": "1"} if request.param == "fallback" else {}
    root: Path = tmp_path_factory.mktemp(f"ranges-{request.param}")
    edge = EdgeProcess(root, FILES, env=env).start()
    c = Client(edge)
    yield c
    c.close()
    edge.stop()


def expected_status(
    header: str, size: int, max_ranges: int = 16
) -> tuple[str, list[tuple[int, int]]]:
    """An independent reading of RFC 9110 §14 plus our documented choices.

    Returns ("full"|"416"|"206", satisfiable ranges as inclusive pairs).
    """
    unit, eq, rest = header.partition("=")
    if not eq or unit.lower() != "bytes":
        return "full", []
    if header.count("-") > max_ranges:
        return "416", []  # more specs than allowed (or garbage that long): refused unread
    specs = [s for s in rest.split(",") if s.strip(" \t")]
    if not specs:
        return "full", []
    resolved = []
    for spec in specs:
        m = SPEC_RE.match(spec.replace("\t", " "))
        if not m or (not m.group(1) and not m.group(2)):
            return "full", []
        first_s, last_s = m.group(1), m.group(2)
        if len(first_s) > 19 or len(last_s) > 19:
            return "full", []
        if first_s and last_s and int(last_s) < int(first_s):
            return "full", []
        if not first_s:
            n = int(last_s)
            if n > 0 and size > 0:
                resolved.append((max(0, size - n), size - 1))
        elif int(first_s) < size:
            last = size - 1 if not last_s else min(int(last_s), size - 1)
            resolved.append((int(first_s), last))
    if not resolved:
        return "416", []
    if sum(b - a + 1 for a, b in resolved) > size:
        return "416", []  # overlapping ranges asking for more than the file: refused
    return "206", resolved


def parse_multipart(body: bytes, ctype: str) -> list[tuple[int, int, int, bytes]]:
    """(first, last, length, bytes) of each part of a multipart/byteranges body."""
    boundary = ctype.split("boundary=")[1].encode()
    parts = []
    chunks = body.split(b"--" + boundary)
    assert chunks[0] == b"\r\n" or chunks[0] == b""
    assert chunks[-1] == b"--\r\n"
    for chunk in chunks[1:-1]:
        head, _, data = chunk[2:].partition(b"\r\n\r\n")
        assert data.endswith(b"\r\n")
        data = data[:-2]
        fields = dict(line.split(": ", 1) for line in head.decode("latin-1").split("\r\n") if line)
        m = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", fields["Content-Range"])
        assert m, fields
        parts.append((int(m.group(1)), int(m.group(2)), int(m.group(3)), data))
    return parts


def check(client: Client, name: str, header: str) -> None:
    data = FILES[name]
    size = len(data)
    status, headers, body = client.get(client.urls[name], {"Range": header})
    kind, wanted = expected_status(header, size)
    assert headers["accept-ranges"] == "bytes"
    if kind == "full":
        assert status == 200, (header, status)
        assert body == data
        assert "content-range" not in headers
    elif kind == "416":
        assert status == 416, (header, status)
        assert headers["content-range"] == f"bytes */{size}"
    else:
        assert status == 206, (header, status)
        covered: set[int] = set()
        if headers["content-type"].startswith("multipart/byteranges"):
            parts = parse_multipart(body, headers["content-type"])
            assert len(parts) >= 2
            spans = []
            for first, last, length, chunk in parts:
                assert length == size
                assert chunk == data[first : last + 1]
                spans.append((first, last))
                covered.update(range(first, last + 1))
            ordered = sorted(spans)
            for (_, a_last), (b_first, _) in itertools.pairwise(ordered):
                assert b_first > a_last + 1, "parts overlap or touch: they should coalesce"
        else:
            m = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", headers["content-range"])
            assert m, headers
            first, last = int(m.group(1)), int(m.group(2))
            assert int(m.group(3)) == size
            assert body == data[first : last + 1]
            covered.update(range(first, last + 1))
        # Everything asked for was sent; anything extra only fills small gaps (coalescing).
        asked = set().union(*(range(a, b + 1) for a, b in wanted))
        assert asked <= covered
        assert len(covered - asked) <= 80 * len(wanted)
    assert int(headers["content-length"]) == len(body)


positions = st.integers(min_value=0, max_value=1_100_000)
int_range = st.builds(lambda a, n: f"{a}-{a + n}", positions, st.integers(0, 200_000))
open_range = st.builds(lambda a: f"{a}-", positions)
suffix = st.builds(lambda n: f"-{n}", st.integers(0, 1_200_000))
spec = st.one_of(int_range, open_range, suffix)
well_formed = st.builds(
    lambda specs, sep: "bytes=" + sep.join(specs),
    st.lists(spec, min_size=1, max_size=20),
    st.sampled_from([",", ", ", " ,", ",,"]),
)
noise = st.text(alphabet=st.sampled_from("bytes=-0123456789, \tBYTESx"), max_size=40).filter(
    lambda s: s.strip() == s and s
)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(name=st.sampled_from(sorted(FILES)), header=st.one_of(well_formed, noise))
def test_any_range_header_matches_file_bytes(client: Client, name: str, header: str) -> None:
    check(client, name, header)


@pytest.mark.parametrize(
    ("header", "status", "content_range"),
    [
        ("bytes=0-499", 206, "bytes 0-499/1000003"),
        ("bytes=-500", 206, "bytes 999503-1000002/1000003"),
        ("bytes=9500-", 206, "bytes 9500-1000002/1000003"),
        ("bytes=0-0,-1", 206, None),  # two parts far apart: multipart
        ("bytes=500-600,601-999", 206, "bytes 500-999/1000003"),  # adjacent: coalesced
        ("bytes=500-700,601-999", 206, "bytes 500-999/1000003"),  # overlapping: coalesced
        ("bytes=2000000-", 416, "bytes */1000003"),
        ("bytes=5-1", 200, None),  # invalid: ignored (documented choice)
        ("items=0-5", 200, None),  # unknown unit: MUST ignore
        ("BYTES=0-9", 206, "bytes 0-9/1000003"),  # unit is case-insensitive
        # > 16 ranges, or overlapping ones adding up to more than the file: refused (§15.5.17)
        ("bytes=" + ",".join(f"{i * 10}-{i * 10}" for i in range(17)), 416, "bytes */1000003"),
        ("bytes=0-,0-", 416, "bytes */1000003"),
    ],
)
def test_rfc_examples(client: Client, header: str, status: int, content_range: str | None) -> None:
    got, headers, _ = client.get(client.urls["big"], {"Range": header})
    assert got == status
    if content_range is not None:
        assert headers["content-range"] == content_range
    check(client, "big", header)


def test_multipart_keeps_request_order(client: Client) -> None:
    status, headers, body = client.get(client.urls["big"], {"Range": "bytes=900000-900009,0-9"})
    assert status == 206
    parts = parse_multipart(body, headers["content-type"])
    assert [(p[0], p[1]) for p in parts] == [(900000, 900009), (0, 9)]


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    name=st.sampled_from(["one", "small", "odd", "big"]),
    first=st.integers(0, 1_100_000),
    length=st.integers(1, 300_000),
    header=st.one_of(st.none(), well_formed),
)
def test_path_form_serves_the_slice(
    client: Client, name: str, first: int, length: int, header: str | None
) -> None:
    """`/c/{id}/range/{first}-{last}` names the slice; a Range header applies within it."""
    data = FILES[name]
    last = first + length - 1
    target = client.edge.url(name, path_range=f"{first}-{last}")
    status, headers, body = client.get(target, {"Range": header} if header else {})
    if first >= len(data):
        assert status == 416
        assert headers["content-range"] == f"bytes */{len(data)}"
        return
    piece = data[first : last + 1]
    if header is None:
        assert status == 200
        assert body == piece
        return
    kind, _ = expected_status(header, len(piece))
    assert status == {"full": 200, "416": 416, "206": 206}[kind]
    if status == 206 and "content-range" in headers:
        m = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", headers["content-range"])
        assert m
        assert int(m.group(3)) == len(piece)
        assert body == piece[int(m.group(1)) : int(m.group(2)) + 1]


def test_path_form_rejects_bad_ranges(client: Client) -> None:
    for bad in ("9-1", "a-b", "-5", "5-", "1-2-3"):
        status, _, body = client.get(client.edge.url("big", path_range=bad), {})
        assert status == 400, bad
        assert body.startswith(b"invalid path range")


def test_head_has_get_headers_and_no_body(client: Client) -> None:
    s_get, h_get, _ = client.get(client.urls["odd"], {})
    s_head, h_head, body = client.get(client.urls["odd"], {}, method="HEAD")
    assert (s_get, s_head) == (200, 200)
    assert body == b""
    h_get.pop("date")
    h_head.pop("date")
    assert h_get == h_head
    # RFC 9110 §14.2: GET is the only method with range handling; HEAD ignores Range.
    s, h, _ = client.get(client.urls["odd"], {"Range": "bytes=0-9"}, method="HEAD")
    assert s == 200
    assert h["content-length"] == str(SIZES["odd"])
