"""bench/chaos/report.py: the printed table (report.md) from report.json's document (pure)."""

from __future__ import annotations

from typing import Any

from bench.chaos.report import report_text


def doc(**changes: Any) -> dict[str, Any]:
    sessions = {"sessions": 9, "failed": 0, "completed": 5, "cut": 4, "rebuffers": 1,
                "rebuffer_s": 0.5, "startup_p50_s": 0.12, "startup_p95_s": None,
                "bytes": 250e6, "errors": {}}  # fmt: skip
    out = {
        "started_utc": "20261208T000000Z",
        "pass": True,
        "seed": 2,
        "users": 4,
        "duration_s": 36.0,
        "fleet": {"edges": {"ams1-a": "ams1", "lon1-a": "lon1"}, "steering_replicas": 2},
        "heartbeat_interval_s": 0.5,
        "snapshot_interval_s": 0.5,
        "bound_s": 2.0,
        "sessions": sessions,
        "rebuffer_s_per_session_hour": 12.0,
        "segment_failovers": 3,
        "steering_failovers": 1,
        "wrong_bytes": 0,
        "wrong_examples": [],
        "faults": [
            {
                "kind": "edge-kill",
                "target": "ams1-a",
                "start_s": 4.0,
                "hold_s": 8.0,
                "out_of_steering_s": 1.25,
                "bound_s": 2.0,
                "note": "",
            },
            {
                "kind": "edge-stop",
                "target": "lon1-a",
                "start_s": 18.0,
                "hold_s": 6.0,
                "out_of_steering_s": None,
                "bound_s": 2.0,
                "note": "",
            },
            {
                "kind": "disk-fail",
                "target": "ams1-a",
                "start_s": None,
                "hold_s": 8.0,
                "out_of_steering_s": None,
                "bound_s": None,
                "note": "skipped",
            },
        ],
        "checks": [{"name": "sessions failed", "ok": True, "detail": "0 of 9"}],
    }
    return out | changes


def test_the_table_says_every_fault_and_target() -> None:
    text = report_text(doc())
    assert text.startswith("# Chaos drill 20261208T000000Z: PASS\n")
    assert "2 edges in 2 sites + origin, 2 steering replicas" in text
    assert "| startup p50 / p95 | 0.12 s / - |" in text
    assert "| MB received | 250 |" in text
    assert "| edge-kill | ams1-a | 4.0 s | 8 s | 1.25 s | 2 s |  |" in text
    assert "| edge-stop | lon1-a | 18.0 s | 6 s | never left | 2 s |  |" in text
    assert "| disk-fail | ams1-a | - | 8 s | - | - | skipped |" in text
    assert "| sessions failed | ok | 0 of 9 |" in text
    assert "Wrong bytes from" not in text and "Failed sessions" not in text


def test_a_failed_drill_lists_its_errors_and_wrong_bytes() -> None:
    sessions = doc()["sessions"] | {"failed": 2, "errors": {"all URLs failed": 2}}
    text = report_text(doc(sessions=sessions, wrong_examples=["ams1-a m bytes=0-9"]))
    assert "- 2 x all URLs failed" in text
    assert "Wrong bytes from:\n- ams1-a m bytes=0-9\n" in text
    assert report_text(doc(**{"pass": False})).startswith("# Chaos drill 20261208T000000Z: FAIL")
