"""The access log: Combined Log Format lines that a client cannot forge."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.accesslog import AccessLog, LogEntry, _format

TS = 784_111_777.25  # 06/Nov/1994:08:49:37 +0000

# host ident authuser [date] "request" status bytes "referer" "user-agent"
COMBINED = re.compile(
    r'(?P<host>\S+) - - \[(?P<date>[^\]]+)\] "(?P<request>(?:[^"\\]|\\x[0-9a-f]{2})*)" '
    r'(?P<status>\d{3}) (?P<bytes>\d+|-) "(?P<referer>(?:[^"\\]|\\x[0-9a-f]{2})*)" '
    r'"(?P<agent>(?:[^"\\]|\\x[0-9a-f]{2})*)"\n'
)


def entry(
    target: bytes = b"/c/a.mp4?e=1&k=a",
    *,
    status: int = 200,
    nbytes: int = 1234,
    referer: bytes = b"",
    agent: bytes = b"curl/8.5.0",
    peer: str = "192.0.2.1",
    ts: float = TS,
    method: bytes = b"GET",
    minor: int = 1,
) -> LogEntry:
    return (peer, ts, method, target, status, nbytes, referer, agent, minor)


def test_combined_log_format_line() -> None:
    assert _format([entry(referer=b"https://example.com/")]) == (
        b'192.0.2.1 - - [06/Nov/1994:08:49:37 +0000] "GET /c/a.mp4?e=1&k=a HTTP/1.1" '
        b'200 1234 "https://example.com/" "curl/8.5.0"\n'
    )


def test_token_is_not_logged() -> None:
    line = _format([entry(b"/c/a.mp4?e=1&k=a&t=SECRETtoken&p=24")])
    assert b"SECRET" not in line
    assert b"e=1&k=a" in line


def test_empty_fields_are_dashes() -> None:
    line = _format([entry(status=304, nbytes=0, referer=b"", agent=b"", minor=0)])
    assert line.endswith(b'"GET /c/a.mp4?e=1&k=a HTTP/1.0" 304 - "-" "-"\n')


def test_one_line_per_entry_with_its_own_time() -> None:
    lines = _format([entry(ts=TS), entry(ts=TS + 0.5), entry(ts=TS + 61, peer="2001:db8::1")])
    assert lines.decode().splitlines() == [
        '192.0.2.1 - - [06/Nov/1994:08:49:37 +0000] "GET /c/a.mp4?e=1&k=a HTTP/1.1" '
        '200 1234 "-" "curl/8.5.0"',
        '192.0.2.1 - - [06/Nov/1994:08:49:37 +0000] "GET /c/a.mp4?e=1&k=a HTTP/1.1" '
        '200 1234 "-" "curl/8.5.0"',
        '2001:db8::1 - - [06/Nov/1994:08:50:38 +0000] "GET /c/a.mp4?e=1&k=a HTTP/1.1" '
        '200 1234 "-" "curl/8.5.0"',
    ]


@pytest.mark.parametrize(
    ("raw", "logged"),
    [
        (b'evil" 200 1 "-" "forged', "evil\\x22 200 1 \\x22-\\x22 \\x22forged"),
        (b"a\nb", "a\\x0ab"),
        (b"a\r\n127.0.0.1 - - [x]", "a\\x0d\\x0a127.0.0.1 - - [x]"),
        (b"tab\there", "tab\\x09here"),
        (b"esc\x1b[31m", "esc\\x1b[31m"),
        (b"del\x7f", "del\\x7f"),
        (b"c1\x85", "c1\\x85"),
        (b"literal \\x22", "literal \\x5cx22"),  # or it would read as an escaped quote
        (b"caf\xe9", "caf\u00e9"),  # printable latin-1 stays readable
    ],
)
def test_client_text_cannot_forge_fields_or_lines(raw: bytes, logged: str) -> None:
    for field in ("target", "referer", "agent"):
        line = _format([entry(**{field: raw})]).decode("utf-8")
        assert logged in line
        assert line.count("\n") == 1
        match = COMBINED.fullmatch(line)
        assert match is not None
        assert match["status"] == "200"


@given(st.binary(max_size=60), st.binary(max_size=60), st.binary(max_size=60))
def test_any_client_bytes_give_one_parsable_line(
    target: bytes, referer: bytes, agent: bytes
) -> None:
    line = _format([entry(target, referer=referer, agent=agent)]).decode("utf-8")
    match = COMBINED.fullmatch(line)
    assert match is not None
    assert (match["host"], match["status"], match["bytes"]) == ("192.0.2.1", "200", "1234")
    unescaped = re.sub(r"\\x([0-9a-f]{2})", lambda m: chr(int(m[1], 16)), match["agent"])
    assert unescaped == (agent.decode("latin-1") or "-")


def test_flush_writes_buffered_lines(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    log = AccessLog(str(path))

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        log.buffer.append(entry(b"/one"))
        log.buffer.append(entry(b"/two"))
        log.flush_soon(loop)
        assert log.buffer == []  # handed to the writer thread
        log.flush_soon(loop)  # nothing new: no second write

    asyncio.run(serve())  # waits for the executor to finish
    try:
        lines = path.read_text().splitlines()
        assert [line.split('"')[1] for line in lines] == ["GET /one HTTP/1.1", "GET /two HTTP/1.1"]
    finally:
        log.close()


def test_close_writes_what_is_left(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    log = AccessLog(str(path))
    log.buffer.append(entry(b"/last"))
    log.close()
    assert '"GET /last HTTP/1.1"' in path.read_text()
    assert path.stat().st_mode & 0o777 == 0o640


def flush(log: AccessLog) -> None:
    """Run one flush on an event loop, as a worker does once a second, and wait for it."""

    async def tick() -> None:
        log.flush_soon(asyncio.get_running_loop())

    asyncio.run(tick())


def test_appends_and_reopens_after_rotation(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    path.write_text("earlier line\n")
    log = AccessLog(str(path))
    other = AccessLog(str(path))  # another worker sharing the file
    log.buffer.append(entry(b"/a"))
    flush(log)
    other.buffer.append(entry(b"/b"))
    other.close()
    path.rename(tmp_path / "access.log.1")  # logrotate, then SIGHUP
    log.reopen()
    log.buffer.append(entry(b"/c"))
    log.close()
    rotated = (tmp_path / "access.log.1").read_text().splitlines()
    assert rotated[0] == "earlier line"
    assert [line.split('"')[1] for line in rotated[1:]] == ["GET /a HTTP/1.1", "GET /b HTTP/1.1"]
    assert [line.split('"')[1] for line in path.read_text().splitlines()] == ["GET /c HTTP/1.1"]
