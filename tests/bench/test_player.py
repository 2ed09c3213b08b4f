"""The playback session model, driven by a fake clock and a fake network (pure logic)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.player import (
    Done,
    Fetch,
    Player,
    PlayerConfig,
    SegmentError,
    SessionReport,
    Steer,
    Wait,
    check_segment,
    parse_title,
    percentile,
    summarise,
)

MB = 1_000_000
# 8 Mbit/s: one MB of file is one second of media, which keeps the arithmetic readable.
CONFIG = PlayerConfig(
    bitrate_bps=8e6, segment_bytes=MB, startup_buffer_s=2, buffer_target_s=10, session_s=10
)


def answer(urls: dict[str, list[str]], cls: str = "local") -> dict[str, Any]:
    """A steering answer: content id → appliances (each URL names its appliance)."""
    return {
        "client_ip": "127.0.0.1",
        "results": [
            {
                "content_id": cid,
                "class": cls if apps else "unavailable",
                "urls": [{"url": f"http://{a}/c/{cid}", "appliance": a, "site": "s"} for a in apps],
            }
            for cid, apps in urls.items()
        ],
    }


@dataclass
class FakeNet:
    """Files of known sizes behind appliances; a fetch takes `latency_s` (or a per-call value)."""

    sizes: dict[str, int]
    latency_s: float | Callable[[Fetch], float] = 0.25
    down: set[str] = field(default_factory=set)  # appliances that refuse connections
    steer_latency_s: float = 0.25
    fetches: list[tuple[float, Fetch]] = field(default_factory=list)

    def run(
        self, player: Player, steering: dict[str, Any] | None, until: float = math.inf
    ) -> SessionReport:
        now = player.started_at
        for _ in range(100_000):
            action = player.next_action(now)
            if isinstance(action, Done):
                return action.report
            if now >= until:
                return player.stop(now)
            if isinstance(action, Steer):
                now += self.steer_latency_s
                if steering is None:
                    player.steer_failed(now, "connection refused")
                else:
                    player.steered(now, steering)
            elif isinstance(action, Wait):
                assert action.seconds > 0
                now = min(now + action.seconds, until)
            else:
                self.fetches.append((now, action))
                lat = self.latency_s(action) if callable(self.latency_s) else self.latency_s
                if now + lat > until:  # the test ends while this segment is on its way
                    return player.stop(until)
                now += lat
                if action.appliance in self.down:
                    player.fetch_failed(now, action, "connection refused")
                    continue
                size = self.sizes[action.content_id]
                last = min(action.end, size - 1)
                body = last - action.start + 1
                player.segment_received(
                    now, action, 206, f"bytes {action.start}-{last}/{size}", body
                )
        raise AssertionError("the session never ended")


def test_a_fast_network_starts_after_the_startup_buffer_and_never_stalls() -> None:
    player = Player(CONFIG, ("movie",), started_at=100.0)
    net = FakeNet({"movie": 64 * MB})
    report = net.run(player, answer({"movie": ["a", "b"]}))
    # Steering 0.25 s, then two 1 s segments at 0.25 s each: 0.75 s to the first frame.
    assert report.startup_s == pytest.approx(0.75)
    assert report.outcome == "completed"
    assert report.watched_s == pytest.approx(10)
    assert (report.rebuffer_s, report.rebuffers, report.failovers) == (0, 0, 0)
    assert report.segments == 10 and report.bytes == 10 * MB
    assert report.duration_s == pytest.approx(0.75 + 10)
    assert report.appliances == ("a",)
    ranges = [f.range_header for _, f in net.fetches]
    assert ranges[:3] == ["bytes=0-999999", "bytes=1000000-1999999", "bytes=2000000-2999999"]


def test_the_player_stays_within_the_buffer_target_and_waits_otherwise() -> None:
    config = PlayerConfig(
        bitrate_bps=8e6, segment_bytes=MB, startup_buffer_s=2, buffer_target_s=4, session_s=30
    )
    player = Player(config, ("movie",), started_at=0.0)
    net = FakeNet({"movie": 64 * MB})
    report = net.run(player, answer({"movie": ["a"]}))
    assert report.outcome == "completed" and report.rebuffer_s == 0
    startup_at = 0.75
    for at, fetch in net.fetches:
        media_fetched = fetch.start / MB  # seconds of media before this segment
        playhead = max(0.0, at - startup_at)
        assert media_fetched - playhead <= config.buffer_target_s + 1e-9
    # The last segments go at the pace of playback, not as fast as the network allows.
    gaps = [b - a for (a, _), (b, _) in zip(net.fetches[10:], net.fetches[11:], strict=False)]
    assert all(g == pytest.approx(1.0) for g in gaps)


def test_a_slow_network_stalls_and_each_stall_lasts_until_a_segment_arrives() -> None:
    # Each 1 s segment takes 2 s: after startup the buffer runs dry once per segment.
    player = Player(CONFIG, ("movie",), started_at=0.0)
    net = FakeNet({"movie": 64 * MB}, latency_s=2.0)
    report = net.run(player, answer({"movie": ["a"]}))
    events = player.drain_events()
    assert report.startup_s == pytest.approx(0.25 + 4)
    # Segment 3 lands as the playhead reaches 2 s (no stall); segments 4..10 each 1 s late.
    assert report.rebuffers == 7
    assert report.rebuffer_s == pytest.approx(7.0)
    assert report.outcome == "completed" and report.watched_s == pytest.approx(10)
    assert report.duration_s == pytest.approx(4.25 + 10 + 7)
    kinds = [e.kind for e in events]
    assert kinds == ["startup", *["rebuffer"] * 7, "session"]
    assert all(e.seconds == pytest.approx(1.0) for e in events if e.kind == "rebuffer")
    assert events[-1].detail == "completed"


def test_an_error_fails_over_to_the_next_url_and_stays_there() -> None:
    player = Player(CONFIG, ("movie",), started_at=0.0)
    net = FakeNet({"movie": 64 * MB}, down={"a"})
    report = net.run(player, answer({"movie": ["a", "b", "c"]}))
    assert report.outcome == "completed"
    assert report.failovers == 1 and report.appliances == ("b",)
    assert [f.appliance for _, f in net.fetches] == ["a"] + ["b"] * 10
    assert net.fetches[0][1].range_header == net.fetches[1][1].range_header  # the same segment
    failover = [e for e in player.drain_events() if e.kind == "failover"]
    assert [e.detail for e in failover] == ["a: connection refused"]


def test_the_session_fails_only_when_every_url_failed_for_a_segment() -> None:
    player = Player(CONFIG, ("movie",), started_at=0.0)
    net = FakeNet({"movie": 64 * MB}, down={"a", "b"})
    report = net.run(player, answer({"movie": ["a", "b"]}))
    assert report.outcome == "failed"
    assert report.error == "movie: all 2 URLs failed (connection refused)"
    assert report.failovers == 2 and report.startup_s is None and report.watched_s == 0


def test_a_wrong_response_counts_as_a_failure_and_fails_over() -> None:
    player = Player(CONFIG, ("movie",), started_at=0.0)
    player.steered(0.1, answer({"movie": ["a", "b"]}))
    fetch = player.next_action(0.1)
    assert isinstance(fetch, Fetch) and fetch.appliance == "a"
    player.segment_received(0.2, fetch, 206, "bytes 0-999999/64000000", 500_000)  # short body
    retry = player.next_action(0.2)
    assert isinstance(retry, Fetch) and retry.appliance == "b" and retry.start == 0
    # A late report about the URL already abandoned changes nothing.
    player.fetch_failed(0.3, fetch, "timeout")
    assert player.next_action(0.3) == retry
    report = player.stop(0.3)
    assert report.outcome == "cut" and report.failovers == 1 and report.error is None


@pytest.mark.parametrize(
    ("status", "content_range", "body", "reason"),
    [
        (200, None, MB, "status 200"),
        (404, None, 40, "status 404"),
        (206, None, MB, "bad Content-Range None"),
        (206, "bytes 0-999999/*", MB, "bad Content-Range"),
        (206, "bytes 5-1000004/64000000", MB, "for bytes=0-999999"),
        (206, "bytes 0-1999999/64000000", 2 * MB, "for bytes=0-999999"),
        (206, "bytes 0-499999/64000000", 500_000, "ends early"),
        (206, "bytes 0-999999/64000000", 999_999, "short body: 999999 of 1000000 bytes"),
    ],
)
def test_check_segment_refuses_anything_but_the_bytes_asked_for(
    status: int, content_range: str | None, body: int, reason: str
) -> None:
    fetch = Fetch(0, "movie", "http://a/c/movie", "a", 0, 0, MB - 1)
    with pytest.raises(SegmentError, match=reason.replace("*", r"\*")):
        check_segment(fetch, status, content_range, body)


def test_check_segment_accepts_a_range_cut_at_the_end_of_the_file() -> None:
    fetch = Fetch(0, "movie", "http://a/c/movie", "a", 0, 0, MB - 1)
    assert check_segment(fetch, 206, "bytes 0-1023/1024", 1024) == 1024
    assert check_segment(fetch, 206, "bytes 0-999999/64000000", MB) == 64_000_000


def test_a_file_shorter_than_the_session_loops_and_ranges_stop_at_its_end() -> None:
    player = Player(CONFIG, ("clip",), started_at=0.0)
    net = FakeNet({"clip": 2_500_000})  # 2.5 s of media
    report = net.run(player, answer({"clip": ["a"]}))
    assert report.outcome == "completed" and report.bytes >= 10 * MB
    ranges = [f.range_header for _, f in net.fetches[:5]]
    assert ranges == [
        "bytes=0-999999",
        "bytes=1000000-1999999",
        "bytes=2000000-2499999",
        "bytes=0-999999",
        "bytes=1000000-1999999",
    ]


def test_a_title_with_audio_fetches_the_track_that_would_stall_first() -> None:
    config = PlayerConfig(
        bitrate_bps=8e6,
        extra_track_bitrate_bps=1e6,  # audio: one MB is 8 s
        segment_bytes=MB,
        startup_buffer_s=2,
        buffer_target_s=10,
        session_s=20,
    )
    player = Player(config, ("video", "audio"), started_at=0.0)
    net = FakeNet({"video": 64 * MB, "audio": 8 * MB})
    report = net.run(player, answer({"video": ["a"], "audio": ["b"]}))
    assert report.outcome == "completed" and report.rebuffer_s == 0
    order = [f.content_id for _, f in net.fetches]
    # Both start empty (video first, by track order); audio is next needed at 8 s, then 16 s.
    assert order[:2] == ["video", "audio"]
    assert order.count("audio") == 3 and order.count("video") == 20
    assert report.appliances == ("a", "b")


def test_steering_failures_try_the_next_replica_then_fail_the_session() -> None:
    player = Player(CONFIG, ("movie",), started_at=0.0, steering_endpoints=2)
    first = player.next_action(0.0)
    assert first == Steer(0, ("movie",), 3)
    player.steer_failed(1.0, "timeout")
    assert player.next_action(1.0) == Steer(1, ("movie",), 3)
    player.steer_failed(2.0, "status 503")
    report = player.stop(2.0)
    assert report.outcome == "failed" and report.error == "steering: status 503"
    assert report.duration_s == 2.0


@pytest.mark.parametrize(
    ("steering", "error"),
    [
        (answer({"movie": []}), "movie: steering has no URL (unavailable)"),
        (answer({"other": ["a"]}), "steering: bad answer: missing or wrong 'movie'"),
        ({"results": [{"content_id": "movie"}]}, "steering: bad answer: missing or wrong 'urls'"),
    ],
)
def test_a_steering_answer_without_urls_fails_the_session(
    steering: dict[str, Any], error: str
) -> None:
    player = Player(CONFIG, ("movie",), started_at=0.0)
    player.steered(0.5, steering)
    report = player.stop(0.5)
    assert report.outcome == "failed" and report.error == error


def test_a_session_cut_during_a_stall_counts_the_stall_so_far() -> None:
    player = Player(CONFIG, ("movie",), started_at=0.0)
    net = FakeNet({"movie": 64 * MB}, latency_s=2.0)
    report = net.run(player, answer({"movie": ["a"]}), until=9.75)
    # Playing from 4.25; stalls 7.25-8.25 (segment 4) and from 9.25 until the end at 9.75.
    assert report.outcome == "cut"
    assert report.watched_s == pytest.approx(4.0)
    assert report.rebuffers == 2 and report.rebuffer_s == pytest.approx(1.5)
    assert report.duration_s == pytest.approx(4.25 + 4.0 + 1.5)


def test_a_session_cut_before_the_first_frame_has_no_startup_time() -> None:
    player = Player(CONFIG, ("movie",), started_at=0.0)
    report = FakeNet({"movie": 64 * MB}, latency_s=5.0).run(
        player, answer({"movie": ["a"]}), until=3.0
    )
    assert report.outcome == "cut" and report.startup_s is None
    assert report.watched_s == 0 and report.rebuffer_s == 0


@given(
    latencies=st.lists(st.floats(0.01, 4.0), min_size=1, max_size=20),
    n_urls=st.integers(1, 3),
    down=st.sets(st.sampled_from(["a0", "a1", "a2"])),
    size=st.integers(1, 5 * MB),
    segment=st.integers(100_000, 3 * MB),
    startup=st.floats(0.5, 5.0),
    extra_target=st.floats(0.0, 20.0),
    session=st.floats(1.0, 60.0),
    until=st.floats(0.0, 120.0),
)
def test_time_is_fully_accounted_and_the_buffer_target_holds(
    latencies: list[float],
    n_urls: int,
    down: set[str],
    size: int,
    segment: int,
    startup: float,
    extra_target: float,
    session: float,
    until: float,
) -> None:
    """Whatever the network does: pressing play to the end is startup + watched + stalls, the
    viewer never watches more than the session, and no fetch goes past the buffer target."""
    config = PlayerConfig(
        bitrate_bps=8e6,
        segment_bytes=segment,
        startup_buffer_s=startup,
        buffer_target_s=startup + extra_target,
        session_s=session,
    )
    player = Player(config, ("m",), started_at=50.0)
    calls = iter(range(10**9))
    lat = lambda _f: latencies[next(calls) % len(latencies)]  # noqa: E731
    net = FakeNet({"m": size}, latency_s=lat, down=down)
    report = net.run(player, answer({"m": [f"a{i}" for i in range(n_urls)]}), until=50 + until)
    assert 0 <= report.watched_s <= session + 1e-9
    assert report.rebuffer_s >= 0 and report.rebuffers >= 0
    if report.startup_s is None:
        assert report.watched_s == 0 and report.rebuffer_s == 0
    else:
        spent = report.startup_s + report.watched_s + report.rebuffer_s
        assert report.duration_s == pytest.approx(spent, abs=1e-6)
    if report.outcome == "failed":  # only when every URL is down
        assert {f"a{i}" for i in range(n_urls)} <= down
    assert report.outcome != "completed" or report.watched_s == pytest.approx(session)
    fetched_s = 0.0
    start_at = 50.0 + (report.startup_s or math.inf)
    for at, fetch in net.fetches:
        assert fetch.end - fetch.start < segment and fetch.start < size
        assert fetch.end < size or fetch.start == 0  # the size is known after one response
        if at > start_at:  # playing: at most the target ahead (before this segment)
            assert fetched_s - (at - start_at) <= config.buffer_target_s + 1e-6
        if fetch.appliance not in down:
            fetched_s += (min(fetch.end, size - 1) - fetch.start + 1) * 8 / 8e6


def test_summarise_counts_outcomes_and_the_rebuffer_ratio() -> None:
    def rep(outcome: Any, startup: float | None, watched: float, rebuffer: float) -> SessionReport:
        return SessionReport("m", outcome, 1, startup, watched, rebuffer, 1, 0, 1, 10, None)

    reports = [
        rep("completed", 1.0, 100, 2),
        rep("completed", 3.0, 100, 0),
        rep("cut", 2.0, 50, 3),
        rep("cut", None, 0, 0),
        SessionReport("m", "failed", 1, None, 0, 0, 0, 2, 0, 0, "m: all 2 URLs failed (x)"),
    ]
    s = summarise(reports)
    assert (s.sessions, s.completed, s.failed, s.cut) == (5, 2, 1, 2)
    assert s.rebuffer_ratio == pytest.approx(5 / 250)
    assert s.rebuffer_s_per_hour == pytest.approx(5 / 250 * 3600)
    assert (s.startup_p50_s, s.startup_p95_s) == (2.0, 3.0)
    assert s.errors == {"m: all 2 URLs failed (x)": 1}
    assert summarise([]).rebuffer_ratio == 0 and summarise([]).startup_p50_s is None


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50 and percentile(values, 95) == 95
    assert percentile([7.0], 95) == 7.0 and percentile([], 50) is None


def test_a_report_survives_its_json_line() -> None:
    report = SessionReport("v+a", "cut", 3.5, 0.7, 2.0, 0.8, 1, 1, 4, 123, None, ("x", "y"))
    assert SessionReport.from_json(report.to_json()) == report
    with pytest.raises(ValueError, match="outcome"):
        SessionReport.from_json(report.to_json() | {"outcome": "great"})


@pytest.mark.parametrize(
    ("kwargs", "field_name"),
    [
        ({"bitrate_bps": 0}, "bitrate_bps"),
        ({"session_s": math.nan}, "session_s"),
        ({"segment_bytes": 0}, "segment_bytes"),
        ({"max_urls": 21}, "max_urls"),
        ({"startup_buffer_s": 10, "buffer_target_s": 5}, "buffer_target_s"),
    ],
)
def test_a_bad_config_names_its_field(kwargs: dict[str, Any], field_name: str) -> None:
    with pytest.raises(ValueError, match=field_name):
        PlayerConfig(**kwargs)


def test_parse_title() -> None:
    assert parse_title("video.mp4+audio.mp4") == ("video.mp4", "audio.mp4")
    assert parse_title("a.bin") == ("a.bin",)
    for bad in ("", "a+", "+a", "a+a"):
        with pytest.raises(ValueError, match="title"):
            parse_title(bad)
