"""A video player's playback session as a pure state machine, and what its viewers felt.

The session asks steering once for every content id of its title (a title is one file, or a
video track plus audio tracks), then downloads each track in sequential byte ranges of
`segment_bytes`, at most `buffer_target_s` of media ahead of the playhead. Playback starts once
`startup_buffer_s` of every track is buffered (the startup time is measured from the moment
the viewer pressed play, steering call included); the playhead then advances in real time and
a rebuffer (stall) lasts from the moment the buffer ran dry until a segment arrives. A failed
request (HTTP error, connection error, timeout, short or wrong body) is retried on the next URL
steering ranked for that content id, and the session fails only when every URL failed for one
segment.

No sockets and no clock here: a thin shell (bench/locustfile.py under locust, or the chaos
drill in-process) loops

    action = player.next_action(now)       # Steer, Fetch, Wait or Done
    ... performs it ...
    player.steered(now, answer) / player.steer_failed(now, reason)
    player.segment_received(now, fetch, status, content_range, body_bytes)
    player.fetch_failed(now, fetch, reason)

and collects `player.drain_events()` (startup, rebuffer, failover, session end) for its metrics.
`player.stop(now)` ends a session the test cut short. `summarise` turns session reports into
the figures a load test prints.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

MIB: Final = 1 << 20
# Two videos alone and one with an audio track: the demo's most watched files (demo/fleet.py).
DEMO_TITLES: Final = "sample-8m.bin,episode-02.bin,sample-8m.bin+episode-01.bin"
CONTENT_RANGE: Final = re.compile(r"bytes (\d+)-(\d+)/(\d+)")
# A shorter wait is noise to a player, and one that rounds to nothing would make a shell spin.
MIN_WAIT_S: Final = 0.001

Outcome = Literal["completed", "failed", "cut"]
State = Literal["steering", "starting", "playing", "stalled", "completed", "failed", "cut"]
EventKind = Literal["startup", "rebuffer", "failover", "session"]


@dataclass(frozen=True)
class PlayerConfig:
    """How a player behaves; every value is validated, errors name the field."""

    bitrate_bps: float = 8e6  # the title's first track (video)
    extra_track_bitrate_bps: float = 128e3  # each further track (audio, subtitles)
    segment_bytes: int = 2 * MIB
    startup_buffer_s: float = 4.0
    buffer_target_s: float = 30.0
    session_s: float = 120.0  # media seconds a viewer watches before the session ends
    max_urls: int = 3  # asked of steering: the failover depth

    def __post_init__(self) -> None:
        for name in ("bitrate_bps", "extra_track_bitrate_bps", "startup_buffer_s", "session_s"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, not {value!r}")
        if not (isinstance(self.segment_bytes, int) and self.segment_bytes > 0):
            raise ValueError(
                f"segment_bytes must be a positive integer, not {self.segment_bytes!r}"
            )
        if not (isinstance(self.max_urls, int) and 1 <= self.max_urls <= 20):
            raise ValueError(f"max_urls must be 1..20 (steering's limit), not {self.max_urls!r}")
        if not (
            math.isfinite(self.buffer_target_s) and self.buffer_target_s >= self.startup_buffer_s
        ):
            raise ValueError(
                f"buffer_target_s ({self.buffer_target_s!r}) must be at least "
                f"startup_buffer_s ({self.startup_buffer_s!r})"
            )


def option_error(exc: ValueError) -> str:
    """A PlayerConfig error led by the command-line option of its field (--segment-bytes)."""
    name = str(exc).split(" ", 1)[0]
    option = "audio-bitrate-bps" if name == "extra_track_bitrate_bps" else name.replace("_", "-")
    return f"--{option}: {exc}"


def parse_title(text: str) -> tuple[str, ...]:
    """A title's content ids in track order: "video.mp4+audio.mp4" → ("video.mp4", "audio.mp4")."""
    ids = tuple(part.strip() for part in text.split("+"))
    if not text.strip() or any(not cid for cid in ids):
        raise ValueError(
            f"title {text!r}: expected content ids joined by '+', e.g. video.mp4+audio.mp4"
        )
    if len(set(ids)) != len(ids):
        raise ValueError(f"title {text!r}: a content id appears twice")
    return ids


# -- what the player asks its shell to do ----------------------------------------------------


@dataclass(frozen=True)
class Steer:
    """POST /v1/steer for the title's content ids to steering endpoint number `endpoint`."""

    endpoint: int
    content_ids: tuple[str, ...]
    max_urls: int


@dataclass(frozen=True)
class Fetch:
    """GET `url` with `Range: bytes=start-end` (end inclusive) for one track's next segment."""

    track: int
    content_id: str
    url: str
    appliance: str
    url_index: int  # 0 = steering's first choice
    start: int
    end: int

    @property
    def range_header(self) -> str:
        """The Range header value."""
        return f"bytes={self.start}-{self.end}"


@dataclass(frozen=True)
class Wait:
    """Nothing to fetch for `seconds` (the buffer is full, or only playback remains)."""

    seconds: float


@dataclass(frozen=True)
class Done:
    """The session is over."""

    report: SessionReport


Action = Steer | Fetch | Wait | Done


# -- what the player reports -------------------------------------------------------------------


@dataclass(frozen=True)
class PlayerEvent:
    """Something a viewer would notice (or an operator count), at monotonic time `at`."""

    kind: EventKind
    at: float
    seconds: float = 0.0  # startup: time to first frame; rebuffer: stall length
    detail: str = ""  # failover: "appliance: reason"; session: the outcome (and error)


@dataclass(frozen=True)
class SessionReport:
    """One viewer's session, as the load test reports it."""

    title: str
    outcome: Outcome
    duration_s: float  # from pressing play to the end of the session
    startup_s: float | None  # None: playback never started
    watched_s: float  # media seconds played
    rebuffer_s: float
    rebuffers: int
    failovers: int
    segments: int
    bytes: int
    error: str | None = None
    appliances: tuple[str, ...] = ()  # those that served at least one segment, first use order

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the load test writes one line per session)."""
        return {
            "title": self.title,
            "outcome": self.outcome,
            "duration_s": self.duration_s,
            "startup_s": self.startup_s,
            "watched_s": self.watched_s,
            "rebuffer_s": self.rebuffer_s,
            "rebuffers": self.rebuffers,
            "failovers": self.failovers,
            "segments": self.segments,
            "bytes": self.bytes,
            "error": self.error,
            "appliances": list(self.appliances),
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> SessionReport:
        """The inverse of `to_json`; a missing or mistyped field raises KeyError/TypeError."""
        outcome = doc["outcome"]
        if outcome not in ("completed", "failed", "cut"):
            raise ValueError(f"outcome: {outcome!r} is not completed, failed or cut")
        startup = doc["startup_s"]
        error = doc["error"]
        return cls(
            title=str(doc["title"]),
            outcome=outcome,
            duration_s=float(doc["duration_s"]),
            startup_s=None if startup is None else float(startup),
            watched_s=float(doc["watched_s"]),
            rebuffer_s=float(doc["rebuffer_s"]),
            rebuffers=int(doc["rebuffers"]),
            failovers=int(doc["failovers"]),
            segments=int(doc["segments"]),
            bytes=int(doc["bytes"]),
            error=None if error is None else str(error),
            appliances=tuple(str(a) for a in doc["appliances"]),
        )


class SegmentError(Exception):
    """A response that does not carry the bytes asked for (the reason is the message)."""


def check_segment(fetch: Fetch, status: int, content_range: str | None, body_bytes: int) -> int:
    """The file's total size when the response is the segment asked for, else SegmentError.

    Only a 206 whose Content-Range starts where asked and whose body holds exactly the range it
    announces counts; the range may end early only at the end of the file (RFC 9110 §14.4).
    """
    if status != 206:
        raise SegmentError(f"status {status}")
    match = CONTENT_RANGE.fullmatch((content_range or "").strip())
    if match is None:
        raise SegmentError(f"bad Content-Range {content_range!r}")
    first, last, total = (int(g) for g in match.groups())
    if first != fetch.start or last > fetch.end or last >= total or last < first:
        raise SegmentError(f"Content-Range {content_range!r} for {fetch.range_header}")
    if last != fetch.end and last != total - 1:
        raise SegmentError(f"Content-Range {content_range!r} ends early for {fetch.range_header}")
    if body_bytes != last - first + 1:
        raise SegmentError(f"short body: {body_bytes} of {last - first + 1} bytes")
    return total


@dataclass
class _Track:
    """Download state of one content id of the title."""

    content_id: str
    bitrate_bps: float
    urls: list[tuple[str, str]]  # (signed URL, appliance), steering's order
    url_index: int = 0  # the URL in use: a player stays on the one that last worked
    offset: int = 0  # next byte to fetch; wraps to 0 at the end of the file (a looped file)
    size: int | None = None  # learned from the first Content-Range
    buffered_s: float = 0.0  # media seconds downloaded since the session started


@dataclass
class Player:
    """One playback session: decides what to fetch next and accounts what the viewer felt."""

    config: PlayerConfig
    content_ids: tuple[str, ...]
    started_at: float  # monotonic seconds when the viewer pressed play
    steering_endpoints: int = 1  # steering replicas to try in order before giving up

    # Session state
    state: State = field(default="steering", init=False)
    _tracks: list[_Track] = field(default_factory=list, init=False)
    _steer_attempt: int = field(default=0, init=False)
    _events: list[PlayerEvent] = field(default_factory=list, init=False)
    _report: SessionReport | None = field(default=None, init=False)
    # Playback clock: the playhead (media seconds) as of monotonic time _clock_at
    _playhead: float = field(default=0.0, init=False)
    _clock_at: float = field(default=0.0, init=False)
    _stall_started: float = field(default=0.0, init=False)
    # Accounting
    _startup_s: float | None = field(default=None, init=False)
    _rebuffer_s: float = field(default=0.0, init=False)
    _rebuffers: int = field(default=0, init=False)
    _failovers: int = field(default=0, init=False)
    _segments: int = field(default=0, init=False)
    _bytes: int = field(default=0, init=False)
    _appliances: list[str] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        if not self.content_ids:
            raise ValueError("content_ids: a title needs at least one content id")
        if self.steering_endpoints < 1:
            raise ValueError("steering_endpoints must be at least 1")
        self._clock_at = self.started_at

    @property
    def title(self) -> str:
        """The title as written on the command line."""
        return "+".join(self.content_ids)

    @property
    def buffered_s(self) -> float:
        """Media seconds playable from the start: the least-buffered track limits playback."""
        return min((t.buffered_s for t in self._tracks), default=0.0)

    @property
    def playhead_s(self) -> float:
        """Media seconds played as of the last call."""
        return self._playhead

    def drain_events(self) -> list[PlayerEvent]:
        """Events since the last call, oldest first."""
        events, self._events = self._events, []
        return events

    # -- the next step ---------------------------------------------------------------------

    def next_action(self, now: float) -> Action:
        """What the shell should do now."""
        self._advance(now)
        if self._report is not None:
            return Done(self._report)
        if self.state == "steering":
            return Steer(self._steer_attempt, self.content_ids, self.config.max_urls)
        if self.state != "playing":  # starting or stalled: the viewer is waiting, fetch now
            return self._fetch_next()
        session_s = self.config.session_s
        if min(t.buffered_s for t in self._tracks) >= session_s:
            # All fetched: only watching remains.
            return Wait(max(session_s - self._playhead, MIN_WAIT_S))
        ahead = self.buffered_s - self._playhead
        if ahead <= self.config.buffer_target_s:
            return self._fetch_next()
        return Wait(max(ahead - self.config.buffer_target_s, MIN_WAIT_S))

    def _fetch_next(self) -> Fetch:
        # The track with the least media buffered is the one that would stall first.
        index = min(range(len(self._tracks)), key=lambda i: self._tracks[i].buffered_s)
        track = self._tracks[index]
        end = track.offset + self.config.segment_bytes - 1
        if track.size is not None:
            end = min(end, track.size - 1)
        url, appliance = track.urls[track.url_index]
        return Fetch(index, track.content_id, url, appliance, track.url_index, track.offset, end)

    # -- outcomes the shell reports --------------------------------------------------------

    def steered(self, now: float, answer: Mapping[str, Any]) -> None:
        """Steering answered 200 with *answer* (the JSON document of docs/fleet-api.md)."""
        if self.state != "steering":
            return
        try:
            by_id = {r["content_id"]: r for r in answer["results"]}
            tracks = []
            for i, cid in enumerate(self.content_ids):
                result = by_id[cid]
                urls = [(str(u["url"]), str(u["appliance"])) for u in result["urls"]]
                if not urls:
                    self._finish(now, "failed", f"{cid}: steering has no URL ({result['class']})")
                    return
                bitrate = self.config.bitrate_bps if i == 0 else self.config.extra_track_bitrate_bps
                tracks.append(_Track(cid, bitrate, urls))
        except (KeyError, TypeError) as exc:
            self.steer_failed(now, f"bad answer: missing or wrong {exc}")
            return
        self._tracks = tracks
        self.state = "starting"

    def steer_failed(self, now: float, reason: str) -> None:
        """The steering call failed (error status, connection error, timeout, bad answer)."""
        if self.state != "steering":
            return
        self._steer_attempt += 1
        if self._steer_attempt >= self.steering_endpoints:
            self._finish(now, "failed", f"steering: {reason}")

    def segment_received(
        self, now: float, fetch: Fetch, status: int, content_range: str | None, body_bytes: int
    ) -> str | None:
        """A response to *fetch* arrived in full; a wrong one counts as a failed fetch.

        Returns why the response was refused (the shell marks the request failed), or None.
        """
        try:
            total = check_segment(fetch, status, content_range, body_bytes)
        except SegmentError as exc:
            self.fetch_failed(now, fetch, str(exc))
            return str(exc)
        self._advance(now)  # the stall (if any) lasted until now, with the old buffer
        if self._report is not None or not self._tracks:
            return None
        track = self._tracks[fetch.track]
        track.size = total
        track.offset = (fetch.start + body_bytes) % total
        track.buffered_s += body_bytes * 8 / track.bitrate_bps
        self._segments += 1
        self._bytes += body_bytes
        if fetch.appliance not in self._appliances:
            self._appliances.append(fetch.appliance)
        playable = self.buffered_s > self._playhead
        if self.state == "starting":
            if self.buffered_s >= min(self.config.startup_buffer_s, self.config.session_s):
                self._startup_s = now - self.started_at
                self._events.append(PlayerEvent("startup", now, self._startup_s))
                self.state = "playing"
                self._clock_at = now
        elif self.state == "stalled" and playable:
            stall = now - self._stall_started
            self._rebuffer_s += stall
            self._events.append(PlayerEvent("rebuffer", now, stall))
            self.state = "playing"
            self._clock_at = now
        return None

    def fetch_failed(self, now: float, fetch: Fetch, reason: str) -> None:
        """*fetch* failed: retry the segment on the track's next URL, or fail the session."""
        self._advance(now)
        if self._report is not None or not self._tracks:
            return
        track = self._tracks[fetch.track]
        if fetch.url_index != track.url_index:
            return  # a stale report: this track has already moved on
        self._failovers += 1
        self._events.append(PlayerEvent("failover", now, detail=f"{fetch.appliance}: {reason}"))
        track.url_index += 1
        if track.url_index >= len(track.urls):
            self._finish(
                now, "failed", f"{fetch.content_id}: all {len(track.urls)} URLs failed ({reason})"
            )

    def stop(self, now: float) -> SessionReport:
        """The test is over: end the session here (unless it already ended) and report it."""
        self._advance(now)
        if self._report is None:
            self._finish(now, "cut", None)
        assert self._report is not None
        return self._report

    # -- the playback clock ----------------------------------------------------------------

    def _advance(self, now: float) -> None:
        """Move the playhead to *now*: playing runs it in real time until the buffer or the
        session ends, whichever comes first, at the exact moment it happened."""
        if self.state == "playing":
            limit = min(self.buffered_s, self.config.session_s)
            reached_at = self._clock_at + (limit - self._playhead)
            session_over = limit >= self.config.session_s
            # A segment landing exactly as the buffer runs dry is no stall.
            if now < reached_at or (now == reached_at and not session_over):
                self._playhead += now - self._clock_at
            else:
                self._playhead = limit
                if session_over:
                    self._finish(reached_at, "completed", None)
                else:
                    self.state = "stalled"
                    self._stall_started = reached_at
                    self._rebuffers += 1
        self._clock_at = max(self._clock_at, now)

    def _finish(self, at: float, outcome: Outcome, error: str | None) -> None:
        if self.state == "stalled":  # the viewer waited until the end: that counts
            self._rebuffer_s += max(0.0, at - self._stall_started)
        self.state = outcome
        self._report = SessionReport(
            title=self.title,
            outcome=outcome,
            duration_s=max(0.0, at - self.started_at),
            startup_s=self._startup_s,
            watched_s=self._playhead,
            rebuffer_s=self._rebuffer_s,
            rebuffers=self._rebuffers,
            failovers=self._failovers,
            segments=self._segments,
            bytes=self._bytes,
            error=error,
            appliances=tuple(self._appliances),
        )
        detail = outcome if error is None else f"{outcome}: {error}"
        self._events.append(PlayerEvent("session", at, self._report.duration_s, detail))


# -- many sessions -----------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank *q*-th percentile (0 < q ≤ 100), None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Summary:
    """What a load test's viewers felt, over all sessions."""

    sessions: int  # started (pressed play), whatever happened next
    completed: int
    failed: int
    cut: int  # still running when the test ended
    watched_s: float
    rebuffer_s: float
    rebuffers: int
    failovers: int
    bytes: int
    startup_p50_s: float | None
    startup_p95_s: float | None
    errors: dict[str, int]  # failed sessions by error, most frequent first

    @property
    def rebuffer_ratio(self) -> float:
        """Rebuffer seconds per watched second (0 when nothing was watched)."""
        return self.rebuffer_s / self.watched_s if self.watched_s > 0 else 0.0

    @property
    def rebuffer_s_per_hour(self) -> float:
        """Rebuffer seconds per hour watched."""
        return self.rebuffer_ratio * 3600

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict, derived figures included."""
        return {
            "sessions": self.sessions,
            "completed": self.completed,
            "failed": self.failed,
            "cut": self.cut,
            "watched_s": self.watched_s,
            "rebuffer_s": self.rebuffer_s,
            "rebuffer_ratio": self.rebuffer_ratio,
            "rebuffer_s_per_hour": self.rebuffer_s_per_hour,
            "rebuffers": self.rebuffers,
            "failovers": self.failovers,
            "bytes": self.bytes,
            "startup_p50_s": self.startup_p50_s,
            "startup_p95_s": self.startup_p95_s,
            "errors": self.errors,
        }


def summarise(reports: Iterable[SessionReport]) -> Summary:
    """Totals and startup percentiles over *reports*."""
    reports = list(reports)
    startups = [r.startup_s for r in reports if r.startup_s is not None]
    errors = Counter(r.error for r in reports if r.outcome == "failed" and r.error)
    return Summary(
        sessions=len(reports),
        completed=sum(r.outcome == "completed" for r in reports),
        failed=sum(r.outcome == "failed" for r in reports),
        cut=sum(r.outcome == "cut" for r in reports),
        watched_s=sum(r.watched_s for r in reports),
        rebuffer_s=sum(r.rebuffer_s for r in reports),
        rebuffers=sum(r.rebuffers for r in reports),
        failovers=sum(r.failovers for r in reports),
        bytes=sum(r.bytes for r in reports),
        startup_p50_s=percentile(startups, 50),
        startup_p95_s=percentile(startups, 95),
        errors=dict(errors.most_common()),
    )
