"""Fuzzing a live `edgefleet steering serve` process: POST /v1/steer with fuzzed JSON bodies,
GET /v1/steer/{id}?… with fuzzed ids and queries, and raw request bytes. Every answer is 2xx or
4xx with a JSON body (4xx: one `error` naming the `field`), never a 5xx, a hang or a crash.

Steering reads its fleet from a fake control (tests/steering/fakecontrol.py) run in a thread
of the test process: the steering server itself is the real process and binary.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgefleet.tokens import Keyring, new_key
from tests.fuzzing import FUZZ, Tally
from tests.processes import terminate, wait_for_line
from tests.steering.fakecontrol import SECRET, FakeControl
from tests.steering.fleetdocs import two_sites
from tests.wire import Response, exchange, split_responses

pytestmark = pytest.mark.slow

READY = re.compile(r"serving on http://127\.0\.0\.1:(\d+)")
CONTENT = ["both.mp4", "ams.mp4", "ams-a.mp4", "lon.mp4", "nowhere.mp4"]
MAX_IDS = 5
CLOSE_HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"


class ControlThread:
    """A FakeControl serving `two_sites` on its own event loop in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.control = FakeControl(two_sites(version=3))
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(self.control.start())
            started.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, name="fake-control", daemon=True)
        self.thread.start()
        assert started.wait(30), "fake control did not start"

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.control.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.loop.close()


@pytest.fixture(scope="module")
def steering(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """The port of a real steering process that has loaded its first snapshot."""
    root: Path = tmp_path_factory.mktemp("fuzz-steering")
    control = ControlThread()
    ring = Keyring(keys={"k1": bytes.fromhex(new_key())}, current="k1")
    (root / "keys.toml").write_text(ring.dumps())
    (root / "secret").write_text(SECRET.hex())
    (root / "steering.toml").write_text(
        f'control_url = "{control.control.url}"\n'
        f'secret_file = "{root / "secret"}"\nkeyring = "{root / "keys.toml"}"\n'
        f"max_ids_per_request = {MAX_IDS}\nsnapshot_interval_s = 0.5\n[listen]\nport = 0\n"
    )
    log = open(root / "stderr.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgefleet.cli", "steering", "serve", "-c", str(root / "steering.toml")],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        match = wait_for_line(proc.stdout, READY, 30)
        assert match, (root / "stderr.log").read_text()
        port = int(match[1])
        for _ in range(300):  # until the first snapshot is in (503 before): bounded
            stream, _ = exchange(port, CLOSE_HEALTHZ, half_close=False)
            if split_responses(stream)[0].status == 200:
                break
        else:
            raise AssertionError("steering never loaded a snapshot")
        yield port
        assert proc.poll() is None, (root / "stderr.log").read_text()[-3000:]
    finally:
        assert terminate(proc, 20) == 0
        log.close()
        control.stop()


# -- strategies -----------------------------------------------------------------------------

IPS = st.one_of(
    st.sampled_from(["198.51.100.7", "203.0.113.9", "192.0.2.1", "2001:db8:1::5", "::ffff:198.51.100.7"]),
    st.ip_addresses().map(str),
    st.sampled_from(["", "1.2.3", "256.1.1.1", "1.2.3.4/24", "::1%eth0", "01.2.3.4", " 1.2.3.4", "a" * 500]),
)  # fmt: skip
CIDS = st.one_of(st.sampled_from(CONTENT), st.text(max_size=140))
JSON_LEAF = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=30)
)
JSON_ANY = st.recursive(
    JSON_LEAF,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=20,
)  # fmt: skip
DOC = st.fixed_dictionaries(
    {},
    optional={
        "client_ip": st.one_of(IPS, JSON_ANY),
        "content_ids": st.one_of(st.lists(CIDS, max_size=MAX_IDS + 2), JSON_ANY),
        "max_urls": st.one_of(st.integers(-2, 25), st.sampled_from([1.0, True, "3", None, 2**70])),
        "extra": JSON_ANY,
    },
)
BODY = st.one_of(
    DOC.map(lambda d: json.dumps(d).encode()),
    DOC.map(lambda d: json.dumps(d).encode()),
    JSON_ANY.map(lambda d: json.dumps(d).encode()),
    st.binary(max_size=200),
    st.sampled_from([b"", b"{", b"[" * 100_000, b'{"client_ip": "\\ud800"}', b"\xff\xfe{}", b"1e999999"]),
)  # fmt: skip
HEADERS = st.lists(
    st.sampled_from(
        [
            "Content-Type: application/json",
            "Content-Type: text/plain",
            "Transfer-Encoding: chunked",
            "Content-Length: 5",
            "Content-Length: -1",
            "Content-Encoding: gzip",
            "Content-Encoding: br",
            "Expect: 100-continue",
            "Connection: keep-alive",
            "X-Forwarded-For: 1.2.3.4",
        ]
    ),
    max_size=3,
)


@st.composite
def post(draw: st.DrawFn) -> tuple[bytes, bool]:
    body = draw(BODY)
    extra = draw(HEADERS)
    length = (
        []
        if any(h.startswith(("Content-Length", "Transfer")) for h in extra)
        else [f"Content-Length: {len(body)}"]
    )
    head = ["POST /v1/steer HTTP/1.1", "Host: 127.0.0.1", "Connection: close", *length, *extra]
    # With a fuzzed framing header the request may be incomplete: half-close after it.
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body, not length


@st.composite
def get(draw: st.DrawFn) -> tuple[bytes, bool]:
    cid = quote(draw(CIDS), safe="")
    params: list[tuple[str, str]] = draw(
        st.lists(
            st.tuples(
                st.sampled_from(["client_ip", "max_urls", "x", "client_ip"]),
                st.one_of(IPS, st.integers(-5, 1000).map(str), st.text(max_size=20)),
            ),
            max_size=4,
        )
    )
    query = urlencode(params)
    if draw(st.booleans()):
        query = query.replace("%", draw(st.sampled_from(["%", "%%", "%zz", "%00"])))
    head = [f"GET /v1/steer/{cid}?{query} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    return ("\r\n".join(head) + "\r\n\r\n").encode(), False


RAW = st.tuples(st.one_of(
    st.binary(max_size=500),
    st.builds(
        lambda m, t: f"{m} {t} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".encode("utf-8", "replace"),
        st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"]),
        st.sampled_from(["/v1/steer", "/v1/steer/", "/healthz", "/metrics", "/openapi.json", "/", "*"]) | st.text(max_size=40),
    ),
), st.just(True))  # fmt: skip


# -- the oracle and the test ----------------------------------------------------------------


def check(resp: Response) -> None:
    """2xx or 4xx only; steering's own answers are JSON (errors naming a field)."""
    assert resp.status < 500, (resp.status, resp.body[:300])
    if resp.headers.get("content-type", "").startswith("application/json") and not resp.bodiless:
        doc: Any = json.loads(resp.body)
        if resp.status >= 400:
            assert isinstance(doc, dict) and isinstance(doc.get("error"), str), doc
        elif "results" in doc:
            for result in doc["results"]:
                for url in result["urls"]:
                    assert url["url"].startswith("http") and "t=" in url["url"]


def test_fuzzed_steering_requests_never_get_5xx(steering: int) -> None:
    """The fuzzing, then the survival check on the same process: one test, so that the check
    always follows fuzzing whatever order the tests run in."""
    tally = Tally("steering")

    @FUZZ
    @given(case=st.one_of(post(), post(), get(), get(), RAW))
    def fuzz_one(case: tuple[bytes, bool]) -> None:
        raw, half_close = case
        stream, reset = exchange(steering, raw, half_close=half_close)
        responses = split_responses(stream, head_possible=b"HEAD" in raw.upper())
        tally.cases += 1
        tally.statuses.update(r.status for r in responses)
        tally.silent_closes += not responses
        tally.resets += reset
        for resp in responses:
            check(resp)

    try:
        fuzz_one()
    finally:
        tally.print_if_asked()
    assert_steering_still_answers_after_fuzzing(steering, tally)


def assert_steering_still_answers_after_fuzzing(steering: int, tally: Tally) -> None:
    assert tally.cases > 0
    body = json.dumps({"client_ip": "198.51.100.7", "content_ids": ["both.mp4"]}).encode()
    raw = (
        b"POST /v1/steer HTTP/1.1\r\nHost: a\r\nConnection: close\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    stream, _ = exchange(steering, raw, half_close=False)
    (resp,) = split_responses(stream)
    assert resp.status == 200
    assert [r["content_id"] for r in json.loads(resp.body)["results"]] == ["both.mp4"]


@pytest.mark.parametrize("coding", ["gzip", "br"])
def test_undecodable_content_encoding_gets_400(steering: int, coding: str) -> None:
    raw = (
        b"POST /v1/steer HTTP/1.1\r\nHost: a\r\nConnection: close\r\nContent-Length: 2\r\n"
        b"Content-Encoding: %s\r\n\r\n{}" % coding.encode()
    )
    stream, _ = exchange(steering, raw, half_close=False)
    (resp,) = split_responses(stream)
    assert resp.status == 400
