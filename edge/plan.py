"""A response as a value: its status, header bytes and body segments, decided before any I/O.

Pure logic. `plan_file` answers a GET or HEAD of a stored file: preconditions (RFC 9110 §13,
`edge.conditional`), then ranges (§14, `edge.ranges`), as one part or multipart/byteranges
(§14.6). `plan_reply` answers with a small generated body (errors, health, metrics). A sender
(`edge.sender`) then only moves the bytes: header bytes from memory, `FileSpan`s from the file.

The edge's fast path (`edge.server`) builds the same heads from the same templates (`HEAD_200`,
`HEAD_206`) and the file's precomputed prefixes, so both paths send identical bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, NamedTuple, Protocol

from edge import conditional, ranges
from edge.responses import SERVER, STATUS_LINE, TEXT, simple_head


class FileSpan:
    """`count` bytes of the response's file from `offset`: a body segment for sendfile."""

    __slots__ = ("count", "offset")

    def __init__(self, offset: int, count: int) -> None:
        self.offset = offset
        self.count = count

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FileSpan) and (self.offset, self.count) == (
            other.offset,
            other.count,
        )

    def __hash__(self) -> int:
        return hash((self.offset, self.count))

    def __repr__(self) -> str:
        return f"FileSpan({self.offset}, {self.count})"


Segment = bytes | FileSpan


class Response(NamedTuple):
    """What to send: status, header bytes, body segments in order (empty for HEAD)."""

    status: int
    head: bytes
    body: tuple[Segment, ...] = ()
    error: str | None = None  # an error counter this answer bumps (a refused range set)


class FileFacts(Protocol):
    """What a response needs to know about a stored file (`edge.fdcache.OpenFile` has it)."""

    @property
    def size(self) -> int: ...
    @property
    def checksum(self) -> str: ...
    @property
    def content_type(self) -> bytes: ...
    @property
    def etag(self) -> str: ...
    @property
    def last_modified(self) -> int: ...
    @property
    def last_modified_http(self) -> bytes: ...
    @property
    def fixed(self) -> bytes: ...


# The tail of a 200 / 206 head after its prefix (status line, Date, Server and the
# representation's headers): one template for the fast path and for `plan_file`.
HEAD_200: Final = b"%sContent-Length: %d\r\n%s\r\n"
HEAD_206: Final = b"%sContent-Range: bytes %d-%d/%d\r\nContent-Length: %d\r\n%s\r\n"
# §15.5.17: a 416 for byte ranges sends the current length.
UNSATISFIED: Final = b"Content-Range: bytes */%d\r\nAccept-Ranges: bytes\r\n"
# Request headers that are preconditions, in `conditional.Preconditions` field order.
CONDITIONAL: Final = (
    b"if-match",
    b"if-none-match",
    b"if-modified-since",
    b"if-unmodified-since",
    b"if-range",
)


def validator_headers(etag: bytes, last_modified_http: bytes) -> bytes:
    """ETag (RFC 9110 §8.8.3), Last-Modified (§8.8.2) and Accept-Ranges (§14.3) lines."""
    return b"ETag: %s\r\nLast-Modified: %s\r\nAccept-Ranges: bytes\r\n" % (
        etag,
        last_modified_http,
    )


def representation_headers(content_type: bytes, etag: bytes, last_modified_http: bytes) -> bytes:
    """The header lines every 200/206 of one representation carries, after `Server`."""
    return b"Content-Type: %s\r\n%s" % (content_type, validator_headers(etag, last_modified_http))


def slice_etag(checksum: str, first: int, last: int) -> str:
    """The strong validator of the path-form slice `/c/{id}/range/{first}-{last}`."""
    return f'"{checksum}.{first}-{last}"'


def plan_reply(
    status: int,
    message: str | bytes,
    date_line: bytes,
    connection: bytes,
    head_only: bool = False,
    extra: bytes = b"",
    content_type: bytes = TEXT,
) -> Response:
    """A small generated reply: errors (one line of text), health and metrics."""
    body = message if isinstance(message, bytes) else (message + "\n").encode()
    head = simple_head(status, len(body), date_line, connection, extra, content_type)
    return Response(status, head, () if head_only else (body,))


def plan_file(
    method: bytes,
    headers: Mapping[bytes, bytes],
    has_conditional: bool,
    file: FileFacts,
    path_range: tuple[int, int] | None,
    max_ranges: int,
    date_line: bytes,
    connection: bytes,
    boundary: bytes,
) -> Response:
    """The answer to a GET or HEAD of *file* (of the slice *path_range* of it, if given)."""
    size = file.size
    head_only = method == b"HEAD"
    if path_range is None:
        base = 0
        etag = file.etag
        prefix = file.fixed  # Server and the representation headers, precomputed
    else:
        # The path form names a sub-resource: the slice is the representation, with its own
        # strong validator; a Range header then applies within the slice.
        first, last = path_range
        if first >= size:
            return plan_reply(
                416, "range not satisfiable", date_line, connection, head_only, UNSATISFIED % size
            )
        last = min(last, size - 1)
        base, size = first, last - first + 1
        etag = slice_etag(file.checksum, first, last)
        prefix = SERVER + representation_headers(
            file.content_type, etag.encode(), file.last_modified_http
        )
    honour_range = True
    if has_conditional:
        pre = conditional.Preconditions(*(_text(headers.get(h)) for h in CONDITIONAL))
        status, honour_range = conditional.evaluate(pre, etag, file.last_modified)
        if status == 304:
            extra = b"ETag: %s\r\nLast-Modified: %s\r\n" % (etag.encode(), file.last_modified_http)
            head = b"".join((STATUS_LINE[304], date_line, SERVER, extra, connection, b"\r\n"))
            return Response(304, head)
        if status == 412:
            return plan_reply(412, "precondition failed", date_line, connection, head_only)
    range_value = headers.get(b"range")
    # §14.2: GET is the only method for which range handling is defined; HEAD ignores it.
    if range_value is None or method != b"GET" or not honour_range:
        decision: ranges.RangeDecision = ranges.FULL
    else:
        decision = ranges.evaluate(range_value.decode("latin-1"), size, max_ranges)
    if decision is ranges.FULL:
        head = HEAD_200 % (STATUS_LINE[200] + date_line + prefix, size, connection)
        return Response(200, head, () if head_only or not size else (FileSpan(base, size),))
    if isinstance(decision, ranges.Satisfiable):
        parts = decision.ranges
        if len(parts) > 1:
            return _multipart(file, etag, parts, base, size, date_line, connection, boundary)
        first, last = parts[0]
        count = last - first + 1
        head = HEAD_206 % (
            STATUS_LINE[206] + date_line + prefix,
            first,
            last,
            size,
            count,
            connection,
        )
        return Response(206, head, (FileSpan(base + first, count),))
    if decision is ranges.EXCESSIVE:
        # §15.5.17: too many or overlapping ranges are refused (edge.ranges says why).
        refused = plan_reply(
            416,
            "too many or overlapping ranges",
            date_line,
            connection,
            head_only,
            UNSATISFIED % size,
        )
        return refused._replace(error="range_refused")
    return plan_reply(
        416, "range not satisfiable", date_line, connection, head_only, UNSATISFIED % size
    )


def _multipart(
    file: FileFacts,
    etag: str,
    parts: tuple[tuple[int, int], ...],
    base: int,
    size: int,
    date_line: bytes,
    connection: bytes,
    boundary: bytes,
) -> Response:
    # RFC 9110 §14.6: multipart/byteranges, each part with its own Content-Type and
    # Content-Range; the response's own Content-Type names the multipart and its boundary.
    ctype = file.content_type
    body: list[Segment] = []
    length = 0
    for first, last in parts:
        part_head = b"\r\n--%s\r\nContent-Type: %s\r\nContent-Range: bytes %d-%d/%d\r\n\r\n" % (
            boundary,
            ctype,
            first,
            last,
            size,
        )
        body.append(part_head)
        body.append(FileSpan(base + first, last - first + 1))
        length += len(part_head) + last - first + 1
    tail = b"\r\n--%s--\r\n" % boundary
    body.append(tail)
    length += len(tail)
    head = b"".join(
        (
            STATUS_LINE[206],
            date_line,
            SERVER,
            validator_headers(etag.encode(), file.last_modified_http),
            b"Content-Type: multipart/byteranges; boundary=%s\r\n" % boundary,
            b"Content-Length: %d\r\n" % length,
            connection,
            b"\r\n",
        )
    )
    return Response(206, head, tuple(body))


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")
