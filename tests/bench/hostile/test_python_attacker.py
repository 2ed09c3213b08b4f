"""bench/hostile/python_attacker.py against a real listening socket on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import sys

import pytest

from bench.hostile import python_attacker


def test_the_command_runs_this_module_with_its_arguments() -> None:
    cmd = python_attacker.command("idle", 8080, "/a/b", 10, 200, 7.5)
    assert cmd == [sys.executable, "-m", "bench.hostile.python_attacker", "idle", "8080",
                   "/a/b", "10", "200", "7.5"]  # fmt: skip


def test_idle_connections_are_opened_held_and_reported(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.create_server(("127.0.0.1", 0), backlog=16) as listener:
        port = listener.getsockname()[1]
        argv = python_attacker.command("idle", port, "/x", 3, 100, 0.3)[3:]
        assert python_attacker.main(argv) == 0
    ready, summary = capsys.readouterr().out.splitlines()
    assert ready == "ready"
    stats = json.loads(summary)
    assert stats["opened"] == 3 and stats["held_at_end"] == 3
    assert stats["connect_errors"] == 0 and stats["closed_by_edge"] == 0


def test_the_abusive_range_header_overlaps_past_max_ranges() -> None:
    specs = python_attacker.ABUSIVE_RANGES.removeprefix("bytes=").split(",")
    assert len(specs) > 16 and specs[:2] == ["0-", "5-0"]
    assert len(python_attacker.ABUSIVE_RANGES) < 8192  # under the edge's max_header_bytes
