"""The playback load test: its pure parts, and a short real run against a real fleet."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.loadtest import parse_args, parse_duration, summary_doc, summary_text
from bench.player import SessionReport, summarise
from bench.timeline import read_player_log, timeline
from tests.fleet.fleetproc import Fleet, wait_until

REPO = Path(__file__).resolve().parents[2]
MOVIE, AUDIO = os.urandom(6 << 20), os.urandom(256 << 10)


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("90s", 90), ("2m", 120), ("1h30m", 5400), ("1m5s", 65)]
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0s", "ten", "5x", "-5s"])
def test_a_bad_duration_names_the_option(text: str) -> None:
    with pytest.raises(ValueError, match="--duration"):
        parse_duration(text)


def test_bad_options_exit_with_a_message(capsys: pytest.CaptureFixture[str]) -> None:
    for argv, needle in (
        (["--users", "0"], "--users"),
        (["--steering", "127.0.0.1:7080"], "--steering"),
        (["--duration", "soon"], "--duration"),
        (["--titles", "a.bin,b.bin+"], "--titles"),
        (["--segment-bytes", "0"], "--segment-bytes"),
        (["--audio-bitrate-bps", "-1"], "--audio-bitrate-bps"),
        (["--startup-buffer-s", "40"], "--buffer-target-s"),
        (["--request-timeout-s", "0"], "--request-timeout-s"),
    ):
        with pytest.raises(SystemExit) as exc:
            parse_args(argv)
        assert exc.value.code == 2
        assert needle in capsys.readouterr().err


def session_line(t: float, outcome: str, error: str | None = None) -> str:
    report = SessionReport("m", outcome, 5, 0.1, 4.0, 0.5, 1, 0, 2, 100, error)  # type: ignore[arg-type]
    return json.dumps({"kind": "session", "t": t, **report.to_json()})


def test_the_player_log_becomes_a_timeline_and_a_summary() -> None:
    lines = [
        json.dumps({"kind": "segment", "t": 100.2, "appliance": "a", "bytes": 2_000_000}),
        json.dumps({"kind": "segment", "t": 100.9, "appliance": "a", "bytes": 1_000_000}),
        json.dumps({"kind": "failover", "t": 101.5, "detail": "a: status 503"}),
        json.dumps({"kind": "rebuffer", "t": 102.1, "seconds": 0.75}),
        "",
        session_line(102.5, "failed", "m: all 1 URLs failed (status 503)"),
        session_line(109.9, "cut"),
        json.dumps({"kind": "segment", "t": 250.0, "bytes": 5}),  # after the end: last bucket
    ]
    log = read_player_log(lines)
    tl = timeline(log, start=100.0, duration_s=4)
    assert tl.mb_s == [3.0, 0.0, 0.0, 5e-6]
    assert tl.failovers == [0, 1, 0, 0]
    assert tl.failed_sessions == [0, 0, 1, 0]
    assert tl.rebuffer_s == [0.0, 0.0, 0.75, 0.0]
    summary = summarise(r for _, r in log.sessions)
    doc = summary_doc(summary, tl, 4, 2, "http://127.0.0.1:7080")
    assert doc["throughput_mb_s"] == pytest.approx(200 / 1e6 / 4)
    text = summary_text(doc)
    assert "2 started: 0 completed, 1 failed, 1 still playing" in text
    assert "ratio 0.1250" in text
    assert "failed: 1 sessions: m: all 1 URLs failed (status 503)" in text


# -- a real run ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    f = Fleet(
        root=tmp_path_factory.mktemp("fleet"),
        sites={"ams1": ["127.0.0.0/25"], "lon1": ["127.0.0.128/25"]},
        edges={
            "ams1-a": ("ams1", {"movie.bin": MOVIE, "audio.bin": AUDIO}),
            "ams1-b": ("ams1", {"movie.bin": MOVIE}),
            "lon1-a": ("lon1", {"movie.bin": MOVIE, "audio.bin": AUDIO}),
        },
    )
    try:
        f.start_all()

        def ready() -> bool:
            results = f.steer("127.0.0.1", ["movie.bin", "audio.bin"])["results"]
            return [len(r["urls"]) for r in results] == [3, 2]

        wait_until(ready, 30, "every edge in steering")
        yield f
    finally:
        f.stop_all()


def run_loadtest(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench.loadtest", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.slow
def test_a_short_run_plays_sessions_without_failures_and_writes_the_reports(
    fleet: Fleet, tmp_path: Path
) -> None:
    steering = fleet.procs["steering"].url
    result = run_loadtest(
        "--steering", steering, "--duration", "10s", "--users", "3", "--spawn-rate", "3",
        "--titles", "movie.bin,movie.bin+audio.bin", "--segment-bytes", str(1 << 20),
        "--session-s", "5", "--buffer-target-s", "4", "--out-dir", str(tmp_path),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    (out,) = tmp_path.glob("loadtest-*")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["sessions"] > 0 and summary["failed"] == 0
    assert summary["bytes"] > 0 and summary["startup_p50_s"] is not None
    assert f"{summary['sessions']} started" in result.stdout
    assert "rebuffer" in result.stdout and "throughput" in result.stdout
    # The movie comes from ams1 (the client's site), audio too: both were played.
    sessions = [json.loads(line) for line in (out / "player.jsonl").read_text().splitlines()]
    titles = {s["title"] for s in sessions if s["kind"] == "session"}
    assert titles <= {"movie.bin", "movie.bin+audio.bin"}
    assert all(s["error"] is None for s in sessions if s["kind"] == "session")
    with open(out / "locust_stats.csv") as fh:
        rows = {(r["Type"], r["Name"]): r for r in csv.DictReader(fh)}
    # One steering call per session (a session cut while steering may miss its count).
    steered = int(rows[("POST", "/v1/steer")]["Request Count"])
    assert summary["sessions"] - 3 <= steered <= summary["sessions"]
    assert int(rows[("PLAYER", "session")]["Failure Count"]) == 0
    segments = [r for (kind, name), r in rows.items() if name.startswith("segment @ams1-")]
    assert segments and all(r["Type"] == "GET" for r in segments)
    assert "PLAYER" in (out / "report.html").read_text()
    assert (out / "timeline.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert (out / "locust_stats_history.csv").stat().st_size > 0


def test_an_unreachable_steering_says_to_start_the_demo(tmp_path: Path) -> None:
    result = run_loadtest(
        "--steering", "http://127.0.0.1:1", "--duration", "5s", "--out-dir", str(tmp_path),
        timeout=30,
    )  # fmt: skip
    assert result.returncode == 2
    assert "not reachable" in result.stderr and "make demo" in result.stderr
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_urls_that_refuse_the_player_fail_over_then_fail_the_session(
    fleet: Fleet, tmp_path: Path
) -> None:
    # URLs signed for another client address: every edge answers 403, so each segment goes
    # down the whole list before the session fails, and the run's status says so.
    result = run_loadtest(
        "--steering", fleet.procs["steering"].url, "--duration", "4s", "--users", "2",
        "--spawn-rate", "2", "--titles", "movie.bin", "--client-ip", "127.0.0.200",
        "--out-dir", str(tmp_path),
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    (out,) = tmp_path.glob("loadtest-*")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["failed"] > 0 and summary["startup_p50_s"] is None
    assert summary["failovers"] >= 3 * summary["failed"]
    assert summary["errors"] == {"movie.bin: all 3 URLs failed (status 403)": summary["failed"]}
    assert f"failed: {summary['failed']} sessions: movie.bin: all 3 URLs failed" in result.stdout
    with open(out / "locust_stats.csv") as fh:
        rows = {(r["Type"], r["Name"]): r for r in csv.DictReader(fh)}
    assert int(rows[("PLAYER", "session")]["Failure Count"]) > 0
    assert {n for _, n in rows if n.startswith("segment @")} == {
        "segment @lon1-a", "segment @ams1-a", "segment @ams1-b"
    }  # fmt: skip
