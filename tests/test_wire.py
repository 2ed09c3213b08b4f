"""The raw-HTTP oracle of the fuzz and hostile-client tests (tests/wire.py), without a server:
if it accepted a broken stream, those tests could not fail."""

from __future__ import annotations

import pytest

from tests.wire import Malformed, byteranges, split_responses

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\nx-a: 2\r\n\r\nhello"
NOT_MODIFIED = b'HTTP/1.1 304 Not Modified\r\nETag: "e"\r\n\r\n'


def test_pipelined_responses_are_split_by_content_length() -> None:
    first, second, third = split_responses(OK + NOT_MODIFIED + OK)
    assert (first.status, first.body, first.headers["x-a"]) == (200, b"hello", "1, 2")
    assert (second.status, second.body) == (304, b"")
    assert third.body == b"hello"


def test_a_body_shorter_than_announced_is_malformed() -> None:
    with pytest.raises(Malformed, match="body cut at 4 of 5"):
        split_responses(OK[:-1])


def test_a_bodiless_answer_is_accepted_only_where_a_head_was_possible() -> None:
    head_reply = OK[: -len(b"hello")]
    assert split_responses(head_reply + OK, head_possible=True)[0].bodiless
    with pytest.raises(Malformed):
        split_responses(head_reply + NOT_MODIFIED)


@pytest.mark.parametrize(
    ("stream", "message"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n", "never ends"),
        (b"HTTP/2 200 OK\r\n\r\n", "not an HTTP/1.1 status line"),
        (b"HTTP/1.1 200 OK\r\nBad Name: x\r\nContent-Length: 0\r\n\r\n", "bad header line"),
        (b"HTTP/1.1 200 OK\r\n\r\n", "without a valid Content-Length"),
    ],
)
def test_broken_heads_are_malformed(stream: bytes, message: str) -> None:
    with pytest.raises(Malformed, match=message):
        split_responses(stream)


def _part(first: int, last: int, data: bytes) -> bytes:
    return (
        b"\r\n--B\r\nContent-Type: video/mp4\r\n"
        + f"Content-Range: bytes {first}-{last}/100\r\n\r\n".encode()
        + data
    )


def test_multipart_byteranges_parts_are_read_in_order() -> None:
    body = _part(0, 1, b"ab") + _part(10, 12, b"xyz") + b"\r\n--B--\r\n"
    assert byteranges(body, "B") == [(0, 1, 100, b"ab"), (10, 12, 100, b"xyz")]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (_part(0, 1, b"ab"), "closing delimiter"),
        (b"junk" + _part(0, 1, b"ab") + b"\r\n--B--\r\n", "preamble"),
        (b"\r\n--B\r\nContent-Type: x\r\n\r\nab\r\n--B--\r\n", "without Content-Range"),
        (b"\r\n--B--\r\n", "no part"),
    ],
)
def test_broken_multipart_bodies_are_malformed(body: bytes, message: str) -> None:
    with pytest.raises(Malformed, match=message):
        byteranges(body, "B")
