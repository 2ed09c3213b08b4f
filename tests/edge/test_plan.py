"""The pure response planner (edge/plan.py): status, header bytes and body segments for any file
size, Range header, precondition and method, checked by reassembling the body from the file."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from edge import ranges
from edge.fdcache import OpenFile
from edge.httpdate import format_http_date
from edge.plan import (
    HEAD_200,
    HEAD_206,
    FileSpan,
    Response,
    plan_file,
    plan_reply,
    representation_headers,
)
from edge.responses import CLOSE, KEEP_ALIVE
from edgefleet.models import ContentRecord

DATE = b"Date: Tue, 08 Dec 2026 04:00:00 GMT\r\n"
BOUNDARY = b"b0undary"
INSTALLED = 1_700_000_000
CHECKSUM = "0123456789abcdef0123456789abcdef"


def open_file(size: int) -> OpenFile:
    """A real OpenFile for a file of *size* bytes (the planner never touches its descriptor)."""
    record = ContentRecord("vid", "d0", "vid", size, CHECKSUM, "video/mp4", INSTALLED, 1)
    return OpenFile(-1, record)


def plan(
    size: int,
    headers: dict[bytes, bytes] | None = None,
    method: bytes = b"GET",
    path_range: tuple[int, int] | None = None,
    connection: bytes = b"",
) -> Response:
    headers = headers or {}
    return plan_file(
        method,
        headers,
        any(name.startswith(b"if-") for name in headers),
        open_file(size),
        path_range,
        ranges.DEFAULT_MAX_RANGES,
        DATE,
        connection,
        BOUNDARY,
    )


def body_of(response: Response, data: bytes) -> bytes:
    """The bytes a sender would write after the head."""
    out = b""
    for segment in response.body:
        if isinstance(segment, FileSpan):
            assert segment.count > 0  # a sender is never handed an empty span
            out += data[segment.offset : segment.offset + segment.count]
        else:
            out += segment
    return out


def head_fields(head: bytes) -> tuple[int, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    assert head.endswith(b"\r\n\r\n")
    fields: dict[str, str] = {}
    for line in lines[1:-2]:
        name, _, value = line.partition(": ")
        assert name.lower() not in fields, f"repeated {name}"
        fields[name.lower()] = value
    return int(lines[0].split()[1]), fields


def multipart_parts(body: bytes, ctype: str) -> list[tuple[str, bytes]]:
    boundary = re.fullmatch(r"multipart/byteranges; boundary=(\S+)", ctype)
    assert boundary is not None
    sep = b"\r\n--" + boundary[1].encode()
    pieces = body.split(sep)
    assert pieces[0] == b"" and pieces[-1] == b"--\r\n"
    parts = []
    for piece in pieces[1:-1]:
        head, _, content = piece.partition(b"\r\n\r\n")
        fields = dict(line.split(": ", 1) for line in head.decode().split("\r\n")[1:])
        assert fields["Content-Type"] == "video/mp4"
        parts.append((fields["Content-Range"], content))
    return parts


# -- properties --------------------------------------------------------------------------

_POS = st.integers(min_value=0, max_value=6000)
_SPEC = st.one_of(
    st.builds(lambda a, b: f"{min(a, b)}-{max(a, b)}", _POS, _POS),
    st.builds(lambda a: f"{a}-", _POS),
    st.builds(lambda n: f"-{n}", _POS),
)
_RANGE = st.one_of(
    st.lists(_SPEC, min_size=1, max_size=20).map(lambda specs: "bytes=" + ",".join(specs)),
    st.text(alphabet="bytes=0123456789-, x", max_size=30),
)


@settings(max_examples=400, deadline=None)
@given(size=st.integers(min_value=0, max_value=5000), header=_RANGE)
def test_any_range_reassembles_to_exactly_the_slices(size: int, header: str) -> None:
    data = bytes(i % 251 for i in range(size))
    response = plan(size, {b"range": header.encode()})
    status, fields = head_fields(response.head)
    assert status == response.status
    body = body_of(response, data)
    assert int(fields["content-length"]) == len(body)
    decision = ranges.evaluate(header, size)
    if decision is ranges.FULL:
        assert (status, body) == (200, data)
    elif decision is ranges.UNSATISFIABLE or decision is ranges.EXCESSIVE:
        assert status == 416
        assert fields["content-range"] == f"bytes */{size}"
        assert response.error == ("range_refused" if decision is ranges.EXCESSIVE else None)
    else:
        assert isinstance(decision, ranges.Satisfiable) and status == 206
        wanted = [(f"bytes {a}-{b}/{size}", data[a : b + 1]) for a, b in decision.ranges]
        if len(wanted) == 1:
            assert (fields["content-range"], body) == wanted[0]
        else:
            assert "content-range" not in fields
            assert multipart_parts(body, fields["content-type"]) == wanted


@settings(max_examples=200, deadline=None)
@given(
    size=st.integers(min_value=1, max_value=3000),
    first=st.integers(min_value=0, max_value=3500),
    length=st.integers(min_value=1, max_value=3500),
    header=st.one_of(st.none(), _RANGE),
)
def test_a_path_form_slice_is_a_representation_of_its_own(
    size: int, first: int, length: int, header: str | None
) -> None:
    data = bytes(i % 253 for i in range(size))
    last = first + length - 1
    headers = {} if header is None else {b"range": header.encode()}
    response = plan(size, headers, path_range=(first, last))
    status, fields = head_fields(response.head)
    if first >= size:
        assert (status, fields["content-range"]) == (416, f"bytes */{size}")
        return
    piece = data[first : min(last, size - 1) + 1]
    if status in (200, 206):
        assert fields["etag"] == f'"{CHECKSUM}.{first}-{first + len(piece) - 1}"'
    # The same answer as for a file holding only the slice, apart from the validator.
    alone = plan(len(piece), headers)
    assert status == alone.status
    assert body_of(response, data) == body_of(alone, piece)


@given(size=st.integers(min_value=0, max_value=100_000), rng=st.booleans())
def test_head_has_the_get_head_and_no_body(size: int, rng: bool) -> None:
    headers = {b"range": b"bytes=0-0"} if rng else {}
    head = plan(size, headers, method=b"HEAD")
    assert head.body == ()
    # §14.2: HEAD ignores Range: the head of a full GET.
    assert head.head == plan(size).head


# -- examples ----------------------------------------------------------------------------


def test_the_heads_match_the_fast_path_templates() -> None:
    # The fast path (edge.server) formats the file's precomputed prefixes with the same
    # templates: both paths must send identical bytes.
    entry = open_file(1000)
    entry.set_date(DATE)
    assert plan(1000, connection=CLOSE).head == HEAD_200 % (entry.head200, 1000, CLOSE)
    ranged = plan(1000, {b"range": b"bytes=10-19"}, connection=KEEP_ALIVE)
    assert ranged.head == HEAD_206 % (entry.head206, 10, 19, 1000, 10, KEEP_ALIVE)
    assert ranged.body == (FileSpan(10, 10),)


def test_a_full_response_is_one_span_of_the_whole_file() -> None:
    response = plan(1000)
    assert response.status == 200
    assert response.body == (FileSpan(0, 1000),)
    _, fields = head_fields(response.head)
    assert fields == {
        "date": DATE[6:-2].decode(),
        "server": "edgefleet",
        "content-type": "video/mp4",
        "etag": f'"{CHECKSUM}"',
        "last-modified": format_http_date(INSTALLED),
        "accept-ranges": "bytes",
        "content-length": "1000",
    }
    assert plan(0).body == ()  # an empty file: nothing to send after the head


def test_preconditions() -> None:
    etag = f'"{CHECKSUM}"'.encode()
    lm = format_http_date(INSTALLED).encode()
    not_modified = plan(10, {b"if-none-match": etag})
    assert not_modified.status == 304 and not_modified.body == ()
    _, fields = head_fields(not_modified.head)
    assert (fields["etag"], fields["last-modified"]) == (etag.decode(), lm.decode())
    assert "content-length" not in fields
    assert plan(10, {b"if-modified-since": lm}).status == 304
    failed = plan(10, {b"if-match": b'"other"'})
    assert failed.status == 412 and failed.body == (b"precondition failed\n",)
    assert plan(10, {b"if-match": b'"other"'}, method=b"HEAD").body == ()
    # If-Range with another validator: the Range is ignored, the whole file is sent (§13.1.5).
    stale = plan(10, {b"range": b"bytes=0-1", b"if-range": b'"old"'})
    assert stale.status == 200 and stale.body == (FileSpan(0, 10),)
    fresh = plan(10, {b"range": b"bytes=0-1", b"if-range": etag})
    assert fresh.status == 206


def test_multipart_body_segments() -> None:
    response = plan(1000, {b"range": b"bytes=0-9,500-509"})
    assert response.status == 206
    spans = [s for s in response.body if isinstance(s, FileSpan)]
    assert spans == [FileSpan(0, 10), FileSpan(500, 10)]
    _, fields = head_fields(response.head)
    assert fields["content-type"] == "multipart/byteranges; boundary=b0undary"
    assert "etag" in fields and "content-range" not in fields


def test_reply() -> None:
    reply = plan_reply(404, "not found", DATE, CLOSE)
    assert reply.body == (b"not found\n",)
    status, fields = head_fields(reply.head)
    assert (status, fields["content-length"], fields["connection"]) == (404, "10", "close")
    assert plan_reply(404, "not found", DATE, CLOSE, head_only=True).body == ()


def test_representation_headers_are_the_open_files_block() -> None:
    entry = open_file(5)
    assert entry.header_block == representation_headers(
        b"video/mp4", f'"{CHECKSUM}"'.encode(), format_http_date(INSTALLED).encode()
    )
