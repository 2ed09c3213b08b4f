"""The players' events and their per-second timeline (pure): player.jsonl as the locust
players write it (bench/locustfile.py) and the load test reads it back (bench/loadtest.py), the
same events recorded in-process by the chaos drill (bench/chaos/), and the buckets the plot
draws (bench/plots.py). A leaf: it imports no other bench module but bench/player.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from bench.player import SessionReport

MB: Final = 1e6


def player_log_line(kind: str, t: float, **fields: Any) -> str:
    """One line of player.jsonl: *kind* (session, segment, failover, rebuffer), the wall-clock
    time *t* and the kind's fields; what `read_player_log` reads back."""
    return json.dumps({"kind": kind, "t": round(t, 3), **fields}) + "\n"


@dataclass
class PlayerLog:
    """player.jsonl, read back: session reports and the timeline events."""

    sessions: list[tuple[float, SessionReport]] = field(default_factory=list)  # (end time, …)
    segments: list[tuple[float, int]] = field(default_factory=list)  # (wall time, bytes)
    failovers: list[tuple[float, str]] = field(default_factory=list)  # (wall time, detail)
    rebuffers: list[tuple[float, float]] = field(default_factory=list)  # (wall time, seconds)


def read_player_log(lines: Iterable[str]) -> PlayerLog:
    """Parse player.jsonl; a bad line raises ValueError naming its number."""
    log = PlayerLog()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
            t = float(doc["t"])
            kind = doc["kind"]
            if kind == "session":
                log.sessions.append((t, SessionReport.from_json(doc)))
            elif kind == "segment":
                log.segments.append((t, int(doc["bytes"])))
            elif kind == "failover":
                log.failovers.append((t, str(doc["detail"])))
            elif kind == "rebuffer":
                log.rebuffers.append((t, float(doc["seconds"])))
            else:
                raise ValueError(f"unknown kind {kind!r}")
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"player log line {number}: {exc!r}") from None
    return log


@dataclass(frozen=True)
class Timeline:
    """Per-second buckets from the start of the run (what the plot draws)."""

    start: float  # wall time of bucket 0
    bucket_s: float
    mb_s: list[float]  # segment bytes received, MB (10^6 bytes) per second
    failovers: list[int]  # requests that failed and moved to the next URL
    failed_sessions: list[int]
    rebuffer_s: list[float]  # stall seconds that ended in the bucket


def timeline(log: PlayerLog, start: float, duration_s: float, bucket_s: float = 1.0) -> Timeline:
    """Bucket the log's events into *bucket_s* slots over [start, start + duration_s]."""
    n = max(1, int(-(-duration_s // bucket_s)))

    def slot(t: float) -> int:
        return min(n - 1, max(0, int((t - start) // bucket_s)))

    mb = [0.0] * n
    fails = [0] * n
    failed = [0] * n
    stalls = [0.0] * n
    for t, size in log.segments:
        mb[slot(t)] += size / MB / bucket_s
    for t, _ in log.failovers:
        fails[slot(t)] += 1
    for t, report in log.sessions:
        if report.outcome == "failed":
            failed[slot(t)] += 1
    for t, seconds in log.rebuffers:
        stalls[slot(t)] += seconds
    return Timeline(start, bucket_s, mb, fails, failed, stalls)
