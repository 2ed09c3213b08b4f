"""bench/timeline.py: player.jsonl written and read back, and its per-second buckets
(tests/bench/test_loadtest.py feeds a whole log through the timeline into the summary)."""

from __future__ import annotations

import json

import pytest

from bench.player import SessionReport
from bench.timeline import player_log_line, read_player_log, timeline


@pytest.mark.parametrize(
    "line",
    ['{"kind": "segment", "t": 1}', '{"kind": "nope", "t": 1}', "not json", '{"t": 1}'],
)
def test_a_bad_player_log_line_is_named(line: str) -> None:
    with pytest.raises(ValueError, match="player log line 2"):
        read_player_log([json.dumps({"kind": "failover", "t": 1, "detail": "x"}), line])


def test_what_the_players_write_is_what_the_load_test_reads() -> None:
    report = SessionReport("m", "completed", 5, 0.1, 4.0, 0.5, 1, 0, 2, 100)
    lines = [
        player_log_line("segment", 10.0004, appliance="a", bytes=1_000_000),
        player_log_line("failover", 10.5, detail="a: status 503"),
        player_log_line("rebuffer", 11.2, seconds=0.25),
        player_log_line("session", 11.9, **report.to_json()),
    ]
    assert all(line.endswith("\n") and line.count("\n") == 1 for line in lines)
    log = read_player_log(lines)
    assert log.segments == [(10.0, 1_000_000)]
    assert log.failovers == [(10.5, "a: status 503")]
    assert log.rebuffers == [(11.2, 0.25)]
    assert log.sessions == [(11.9, report)]
    assert timeline(log, start=10.0, duration_s=2).mb_s == [1.0, 0.0]
