"""bench/chaos/verdict.py: the targets the drill must meet (pure)."""

from __future__ import annotations

from typing import Any

from bench.chaos.schedule import KINDS, OUT_KINDS
from bench.chaos.verdict import verdict
from bench.player import summarise


def row(kind: str, out: float | None) -> dict[str, Any]:
    return {"kind": kind, "target": "ams1-a", "out_of_steering_s": out}


def test_verdict_fails_on_a_slow_or_missing_exit_and_ignores_other_faults() -> None:
    from bench.player import SessionReport

    ok = SessionReport("t", "completed", 30, 0.1, 30, 0, 0, 0, 10, 1000)
    summary = summarise([ok])
    checks = verdict(summary, 0, [row("edge-kill", 1.5), row("edge-delay", None)], 2.0)
    assert all(c.ok for c in checks)
    assert len(checks) == 5  # 4 playback targets + the one exit
    for bad in (row("edge-stop", 2.5), row("edge-drain", None)):
        assert not all(c.ok for c in verdict(summary, 0, [bad], 2.0))
    assert not all(c.ok for c in verdict(summary, 1, [], 2.0))
    failed = summarise([ok, SessionReport("t", "failed", 3, None, 0, 0, 0, 3, 0, 0, "all")])
    assert not all(c.ok for c in verdict(failed, 0, [], 2.0))
    assert not all(c.ok for c in verdict(summarise([]), 0, [], 2.0))  # no load, no pass
    assert not all(c.ok for c in verdict(summary, 0, [], 2.0, origin_answers=1))
    assert set(KINDS) >= OUT_KINDS
