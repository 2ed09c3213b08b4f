"""Fuzzing a live edge with raw request bytes: no crash, no hang, no 5xx, no wrong byte.

Hypothesis builds request lines (methods, /c/<id> and /c/<id>/range/a-b targets, signed
queries valid, tampered, truncated or huge, percent-encoding, NULs, CR/LF injection), header
sets (every Range shape, If-*, Host, Connection, Transfer-Encoding/Content-Length conflicts,
duplicates, obs-fold, values near max_header_bytes), pipelined sequences sent in arbitrary
chunks, mutated valid requests and random bytes. Each case goes over a fresh TCP connection,
which the client half-closes after sending.

What a correct edge does with each, per RFC 9112, and what `check` accepts:
- every byte it sends parses as a sequence of HTTP/1.1 responses, each with status < 500;
- a malformed request gets a 400 (or 414/431 for oversize parts) and the connection closes;
- an incomplete request followed by the client's half-close is closed without a response
  (§9.6: nothing complete was asked; waiting for header_timeout_s would only cost a socket);
- 200 and 206 bodies equal the file's bytes (found by ETag), multipart parts included;
- the connection closes within a bounded time once the client half-closes (no hang), and
  the edge process and its worker survive (no crash).
The budget is EDGEFLEET_FUZZ_EXAMPLES (tests/fuzzing.py); `make fuzz` runs ≥ 10,000.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from urllib.parse import quote

import pytest
import xxhash
from hypothesis import given
from hypothesis import strategies as st

from edgefleet.tokens import Keyring, new_key, signed_query
from tests.edge.edgeproc import EdgeProcess
from tests.edge.probes import assert_serves, error_count
from tests.fuzzing import FUZZ, Tally
from tests.wire import (
    BOUNDARY,
    CONTENT_RANGE,
    Response,
    byteranges,
    exchange,
    split_responses,
)

pytestmark = pytest.mark.slow

FILES = {
    "data.bin": os.urandom(70_000),
    "one.bin": os.urandom(1),
    "v_1-2.mp4": os.urandom(5000),
}
LIMITS = """
[limits]
header_timeout_s = 2
keep_alive_timeout_s = 2
send_timeout_s = 2
"""


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeProcess]:
    """One edge for the whole module; it must stop cleanly (exit 0) after the fuzzing."""
    proc = EdgeProcess(tmp_path_factory.mktemp("fuzz-edge"), FILES, extra_config=LIMITS)
    # The strategies are built at import with KEYRING (they must not depend on a fixture).
    proc.keyring_path.write_text(KEYRING.dumps())
    proc.keyring = KEYRING
    assert {rec.checksum for rec in proc.records.values()} == set(BY_ETAG)
    yield proc.start()
    assert proc.stop() == 0, proc.stderr()[-2000:]


# ETag (without quotes) → the file's bytes: how a response is matched to its file. The
# importer's checksum is xxh3-128 (edge/importer.py); the fixture checks they agree.
BY_ETAG = {xxhash.xxh3_128(data).hexdigest(): data for data in FILES.values()}
KEYRING = Keyring(keys={"k1": bytes.fromhex(new_key())}, current="k1")


# -- strategies -----------------------------------------------------------------------------

CIDS = [*FILES, "missing.bin"]
BAD_CIDS = ["", ".", "..", ".hidden", "a/b", "a" * 129, "%00", "a%2Fb", "é", "a b", "a\x00b"]
NUMBERS = st.one_of(
    st.integers(0, 80_000).map(str),
    st.sampled_from(["", "-1", "18446744073709551616", "9" * 19, "9" * 20, "0x10", "1e3", " 5"]),
)


def range_spec() -> st.SearchStrategy[str]:
    """One range-spec of RFC 9110 §14.1.1, or something that is nearly one."""
    return st.one_of(
        st.builds(lambda a, b: f"{a}-{b}", NUMBERS, NUMBERS),
        st.builds(lambda a: f"{a}-", NUMBERS),
        st.builds(lambda b: f"-{b}", NUMBERS),
        st.text(st.sampled_from("0123456789-, =\t"), max_size=12),
    )


RANGE = st.one_of(
    # valid single and double ranges: where 206 and multipart bodies come from
    st.builds(lambda a, n: f"bytes={a}-{a + n}", st.integers(0, 70_000), st.integers(0, 5000)),
    st.builds(
        lambda a, b: f"bytes={a[0]}-{a[0] + a[1]}, {b[0]}-{b[0] + b[1]}",
        st.tuples(st.integers(0, 70_000), st.integers(0, 900)),
        st.tuples(st.integers(0, 70_000), st.integers(0, 900)),
    ),
    st.builds(lambda s: "bytes=" + ",".join(s), st.lists(range_spec(), min_size=1, max_size=5)),
    st.builds(
        lambda s, sep: "bytes=" + sep.join(s),
        st.lists(range_spec(), min_size=1, max_size=400),
        st.sampled_from([",", ", ", " ,", ",,"]),
    ),
    # hundreds of overlapping small ranges (the "Apache Killer" shape)
    st.builds(lambda n: "bytes=" + ",".join(f"{i}-{i + 1}" for i in range(n)), st.integers(1, 600)),
    st.builds(
        lambda u, s: f"{u}={s}", st.sampled_from(["items", "Bytes", "bytes ", ""]), range_spec()
    ),
    st.text(max_size=40),
)
DATES = st.sampled_from(
    [
        "Sun, 06 Nov 1994 08:49:37 GMT",
        "Sunday, 06-Nov-94 08:49:37 GMT",
        "Sun Nov  6 08:49:37 1994",
        "Fri, 31 Dec 9999 23:59:59 GMT",
        "Thu, 01 Jan 1970 00:00:00 GMT",
        "yesterday",
        "",
    ]
)


def header_lines(etags: list[str]) -> st.SearchStrategy[list[str]]:
    """A list of header lines (without CRLF) drawn from the shapes that matter to the edge."""
    etag = st.one_of(
        st.sampled_from(etags).map(lambda e: f'"{e}"'),
        st.sampled_from(etags).map(lambda e: f'W/"{e}"'),
        st.just("*"),
        st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20),
        st.text(max_size=20),
    )
    etag_list = st.lists(etag, min_size=1, max_size=4).map(", ".join)
    value = st.text(st.characters(codec="latin-1"), max_size=60)
    # Mostly headers a player or a proxy sends, so that most requests reach range and
    # precondition handling; a few nasty ones per request, often none.
    clean = st.one_of(
        st.builds("Range: {}".format, RANGE),
        st.builds("Range: {}".format, RANGE),
        st.builds("If-Range: {}".format, st.one_of(etag, DATES)),
        st.builds("If-None-Match: {}".format, etag_list),
        st.builds("If-Match: {}".format, etag_list),
        st.builds("If-Modified-Since: {}".format, DATES),
        st.builds("If-Unmodified-Since: {}".format, DATES),
        st.builds(
            "Connection: {}".format,
            st.sampled_from(["close", "keep-alive", "Upgrade", "upgrade, close", "TE", "", "x"]),
        ),
        st.sampled_from(["Accept: */*", "User-Agent: fuzz/1", "Accept-Encoding: gzip"]),
    )
    nasty = st.one_of(
        st.builds("Host: {}".format, st.sampled_from(["127.0.0.1", "", "a b", "x" * 300])),
        st.sampled_from(["Upgrade: websocket", "Upgrade: h2c", "HTTP2-Settings: AAMAAABkAAQ"]),
        st.builds(
            "Transfer-Encoding: {}".format,
            st.sampled_from(["chunked", "gzip", "chunked, chunked", "gzip, chunked", "identity"]),
        ),
        st.builds("Content-Length: {}".format, NUMBERS),
        st.sampled_from(["Expect: 100-continue", "Expect: nonsense"]),
        st.builds("X-Fold: a\r\n {}".format, value),  # obs-fold (RFC 9112 §5.2)
        st.builds(lambda n: "X-Long: " + "v" * n, st.integers(7000, 8300)),
        st.builds("{}: {}".format, st.text(st.characters(codec="ascii"), max_size=20), value),
        st.builds(
            "{}:{}".format, st.sampled_from(["Range ", " Range", "Ra nge", "Range\x00"]), RANGE
        ),
    )
    lines = st.builds(
        list.__add__,
        st.lists(clean, max_size=5),
        st.one_of(st.just([]), st.lists(nasty, max_size=2)),
    )
    return lines.flatmap(st.permutations)


def signed(keyring: Keyring, cid: str, how: str) -> str:
    """The query string of a signed URL for *cid*, valid or spoilt in the way *how* says.
    (A token signs the content id only: the path form /range/a-b takes the same query.)"""
    now = int(time.time())
    if how == "expired":
        return signed_query(keyring, cid, now - 10)
    if how == "bound-other":
        return signed_query(keyring, cid, now + 3600, "192.0.2.7", 32)
    query = signed_query(keyring, cid, now + 3600)
    if how == "valid":
        return query
    if how == "bound-self":
        return signed_query(keyring, cid, now + 3600, "127.0.0.1", 24)
    if how == "other-id":
        return signed_query(keyring, "data.bin" if cid != "data.bin" else "one.bin", now + 3600)
    if how == "tampered":
        return query[:-1] + ("A" if query[-1] != "A" else "B")
    if how == "truncated":
        return query[: len(query) // 2]
    if how == "duplicated":
        return query + "&" + query
    if how == "huge":
        return query + "&t=" + "A" * 5000
    if how == "unknown-key":
        return query.replace("k=", "k=zz", 1)
    if how == "far-expiry":
        return query.replace("e=", "e=9999999", 1)
    if how == "encoded":
        return quote(query, safe="")
    return ""


class Queries(dict[tuple[str, str], str]):
    """(content id, token shape) → query string, made once: a strategy must not depend on the
    clock, or hypothesis cannot replay what it found."""

    def __repr__(self) -> str:  # strategies' reprs include their arguments: keep it short
        return f"Queries({len(self)})"


def all_queries(keyring: Keyring) -> Queries:
    return Queries(
        {(cid, how): signed(keyring, cid, how) for cid in CIDS + BAD_CIDS for how in TOKEN_SHAPES}
    )


TOKEN_SHAPES = [
    "valid", "expired", "bound-other", "bound-self", "other-id", "tampered", "truncated",
    "duplicated", "huge", "unknown-key", "far-expiry", "encoded", "none",
]  # fmt: skip


@st.composite
def target(draw: st.DrawFn, queries: Queries) -> str:
    """A request-target: mostly /c/<id>[/range/a-b]?<signed query>, some others."""
    kind = draw(st.sampled_from(["content"] * 8 + ["other", "text"]))
    if kind == "other":
        return draw(
            st.sampled_from(
                ["/healthz", "/metrics", "/", "*", "/c/", "/c", "//c/data.bin", "/C/data.bin",
                 "http://127.0.0.1/healthz", "/healthz?x=1", "/c/data.bin/range/", "/%63/one.bin"]
            )
        )  # fmt: skip
    if kind == "text":
        return draw(st.text(st.characters(codec="latin-1"), max_size=80))
    cid = draw(st.sampled_from(CIDS * 3 + BAD_CIDS))
    path_range = None
    if draw(st.integers(0, 3)) == 0:
        path_range = draw(
            st.one_of(
                st.builds(
                    lambda a, n: f"{a}-{a + n}", st.integers(0, 80_000), st.integers(0, 9000)
                ),
                st.builds(lambda a, b: f"{a}-{b}", NUMBERS, NUMBERS),
                st.text(st.sampled_from("0123456789-x/"), max_size=10),
            )
        )
    how = draw(st.sampled_from(["valid"] * 12 + TOKEN_SHAPES))
    query = queries[cid, how]
    path = f"/c/{cid}" + (f"/range/{path_range}" if path_range is not None else "")
    if draw(st.integers(0, 9)) == 0:
        path = quote(path, safe="/")  # percent-encoded: a different target to the edge
    return path + (f"?{query}" if query or draw(st.booleans()) else "")


@st.composite
def one_request(draw: st.DrawFn, queries: Queries, etags: list[str]) -> bytes:
    method = draw(
        st.one_of(
            st.sampled_from(["GET"] * 12 + ["HEAD", "POST", "PUT", "OPTIONS", "TRACE", "CONNECT"]),
            st.sampled_from(["GET"] * 12 + ["get", "G ET", "PRI", "", "GET\x00"]),
        )
    )
    version = draw(
        st.sampled_from(
            ["HTTP/1.1"] * 20
            + ["HTTP/1.0"] * 3
            + ["HTTP/2.0", "HTTP/0.9", "http/1.1", "HTTP/1.1 x", ""]
        )
    )
    sep = draw(st.sampled_from([" "] * 20 + ["  ", "\t", "\r\n"]))
    lines = [f"{method}{sep}{draw(target(queries))}{sep}{version}".rstrip() if version else
             f"{method} {draw(target(queries))}"]  # fmt: skip
    if draw(st.integers(0, 4)):
        lines.append("Host: 127.0.0.1")
    lines += draw(header_lines(etags))
    head = "\r\n".join(lines).encode("latin-1", "replace") + b"\r\n\r\n"
    body: bytes = draw(
        st.one_of(
            st.just(b""),
            st.just(b""),
            st.just(b""),
            st.just(b""),
            st.binary(max_size=40),
            st.sampled_from([b"0\r\n\r\n", b"5\r\nhello\r\n0\r\n\r\n", b"ffffffffffffffff\r\n"]),
        )
    )
    return head + body


@st.composite
def wellformed_request(draw: st.DrawFn, queries: Queries, etags: list[str]) -> bytes:
    """A syntactically valid GET or HEAD of one of the files, with fuzzed Range and If-*
    values and a valid or spoilt token: the part of the space where file bytes are sent."""
    cid = draw(st.sampled_from(list(FILES)))
    path_range = None
    if draw(st.integers(0, 3)) == 0:
        first = draw(st.integers(0, len(FILES[cid]) + 10))
        path_range = f"{first}-{first + draw(st.integers(0, 30_000))}"
    how = draw(st.sampled_from(["valid"] * 20 + TOKEN_SHAPES))
    rng = f"/range/{path_range}" if path_range else ""
    printable = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30)
    etag = st.one_of(st.sampled_from(etags).map(lambda e: f'"{e}"'), st.just("*"), printable)
    value = st.one_of(
        st.builds("Range: {}".format, RANGE.filter(str.isprintable)),
        st.builds("If-Range: {}".format, st.one_of(etag, DATES)),
        st.builds("If-None-Match: {}".format, etag),
        st.builds("If-Match: {}".format, etag),
        st.builds("If-Modified-Since: {}".format, DATES),
        st.builds("If-Unmodified-Since: {}".format, DATES),
        st.sampled_from(["Connection: close", "Connection: keep-alive"]),
    )
    lines = [
        f"{draw(st.sampled_from(['GET'] * 5 + ['HEAD']))} /c/{cid}{rng}?{queries[cid, how]} "
        f"{draw(st.sampled_from(['HTTP/1.1'] * 3 + ['HTTP/1.0']))}",
        "Host: 127.0.0.1",
        *draw(st.lists(value, max_size=4)),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@st.composite
def request_bytes(draw: st.DrawFn, queries: Queries, etags: list[str]) -> bytes:
    """Raw bytes a client might send: requests (pipelined), mutations of them, random bytes."""
    kind = draw(
        st.sampled_from(["wellformed"] * 3 + ["one"] * 3 + ["pipelined", "mutated", "random"])
    )
    if kind == "wellformed":
        return b"".join(draw(st.lists(wellformed_request(queries, etags), min_size=1, max_size=3)))
    if kind == "random":
        return draw(st.binary(max_size=3000))
    if kind == "pipelined":
        return b"".join(draw(st.lists(one_request(queries, etags), min_size=2, max_size=5)))
    raw = draw(one_request(queries, etags))
    if kind == "mutated" and raw:
        at = draw(st.integers(0, len(raw) - 1))
        how = draw(st.sampled_from(["insert", "delete", "replace", "truncate"]))
        byte = bytes([draw(st.integers(0, 255))])
        raw = {
            "insert": raw[:at] + byte + raw[at:],
            "delete": raw[:at] + raw[at + 1 :],
            "replace": raw[:at] + byte + raw[at + 1 :],
            "truncate": raw[:at],
        }[how]
    return raw


@st.composite
def chunked(draw: st.DrawFn, raw: bytes) -> tuple[bytes, tuple[bytes, ...]]:
    """*raw* cut at a few arbitrary points: the parser must not care how bytes arrive."""
    if len(raw) < 2 or draw(st.integers(0, 3)) != 0:
        return raw, ()
    cuts = sorted(set(draw(st.lists(st.integers(1, len(raw) - 1), max_size=4))))
    pieces = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
    return pieces[0], tuple(pieces[1:])


# -- the oracle -----------------------------------------------------------------------------


def representation(etag: str, by_etag: dict[str, bytes]) -> bytes | None:
    """The bytes an ETag stands for: a file, or the slice `"<checksum>.<first>-<last>"` the
    path form /range/a-b names; None when it is not one of ours (weak, or no file)."""
    tag = etag.strip('"')
    checksum, dot, span = tag.partition(".")
    data = by_etag.get(checksum)
    if data is None or not etag.startswith('"'):
        return None
    if not dot:
        return data
    first, _, last = span.partition("-")
    return data[int(first) : int(last) + 1]


def check(responses: list[Response], by_etag: dict[str, bytes]) -> None:
    """Every response is < 500, and any file bytes in it are the file's bytes."""
    for resp in responses:
        assert resp.status < 500, (resp.status, resp.headers, resp.body[:200])
        if resp.status >= 400 and not resp.bodiless:
            assert resp.body.endswith(b"\n") and resp.body.count(b"\n") == 1, resp.body[:200]
        if resp.status not in (200, 206) or resp.bodiless:
            continue
        rep = representation(resp.headers.get("etag", ""), by_etag)
        if rep is None:
            # Only generated documents come without one of our ETags.
            assert resp.headers.get("content-type", "").startswith("text/plain"), resp.headers
            continue
        if resp.status == 200:
            assert resp.body == rep
            continue
        boundary = BOUNDARY.fullmatch(resp.headers.get("content-type", ""))
        if boundary is None:
            match = CONTENT_RANGE.fullmatch(resp.headers.get("content-range", ""))
            assert match is not None, resp.headers
            first, last, size = (int(g) for g in match.groups())
            assert size == len(rep) and first <= last < size
            assert resp.body == rep[first : last + 1]
        else:
            assert "content-range" not in resp.headers
            parts = byteranges(resp.body, boundary[1])
            assert len(parts) >= 2
            for first, last, size, data in parts:
                assert size == len(rep) and first <= last < size
                assert data == rep[first : last + 1]


# -- the test -------------------------------------------------------------------------------


QUERIES = all_queries(KEYRING)  # valid for an hour from import


@st.composite
def sent(draw: st.DrawFn) -> tuple[bytes, tuple[bytes, ...]]:
    """What the client sends: the bytes, cut into the pieces it writes them in."""
    return draw(chunked(draw(request_bytes(QUERIES, sorted(BY_ETAG)))))


def test_fuzzed_requests_get_well_formed_answers(edge: EdgeProcess) -> None:
    """The fuzzing, then the survival check on the same edge: one test, so that the check
    always follows fuzzing whatever order the tests run in."""
    tally = Tally("edge", workers=edge.workers())

    @FUZZ
    @given(pieces=sent())
    def fuzz_one(pieces: tuple[bytes, tuple[bytes, ...]]) -> None:
        first, rest = pieces
        raw = first + b"".join(rest)
        stream, reset = exchange(edge.port, first, chunks=rest)
        responses = split_responses(stream, head_possible=b"HEAD" in raw.upper())
        tally.cases += 1
        tally.statuses.update(r.status for r in responses)
        tally.silent_closes += not responses
        tally.resets += reset
        check(responses, BY_ETAG)
        assert edge.proc is not None and edge.proc.poll() is None, edge.stderr()[-2000:]

    try:
        fuzz_one()
    finally:
        tally.print_if_asked()
    assert_edge_survived_fuzzing_and_still_serves(edge, tally)


def assert_edge_survived_fuzzing_and_still_serves(edge: EdgeProcess, tally: Tally) -> None:
    """After the fuzzing: the first worker is still the one serving, no internal error was
    counted (a 500 or an aborted response), and a normal request gets the right bytes."""
    assert tally.cases > 0
    assert edge.workers() == tally.workers  # the same worker: none crashed and was replaced
    assert error_count(edge.port, "internal") == 0, edge.stderr()[-3000:]
    assert_serves(edge, "data.bin", FILES["data.bin"])
