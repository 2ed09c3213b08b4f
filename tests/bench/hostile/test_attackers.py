"""bench/hostile/attackers.py: slowhttptest's command lines and the summary of its output."""

from __future__ import annotations

import pytest

from bench.hostile.attackers import slowhttptest_cmd, slowhttptest_summary


def test_each_attack_has_its_slowhttptest_mode_bounded_in_time() -> None:
    url = "http://127.0.0.1:1/f"
    for attack, mode in (("slowloris", "-H"), ("slow-read", "-X"), ("range-abuse", "-R")):
        cmd = slowhttptest_cmd("/usr/bin/slowhttptest", attack, url, 100, 50, 22)
        assert cmd[:2] == ["/usr/bin/slowhttptest", mode]
        assert cmd[cmd.index("-l") + 1] == "22" and cmd[cmd.index("-c") + 1] == "100"
        assert cmd[cmd.index("-u") + 1] == url
    with pytest.raises(ValueError):
        slowhttptest_cmd("slowhttptest", "idle", url, 1, 1, 1)


def test_the_summary_is_the_last_status_block_without_colours() -> None:
    lines = [
        "\x1b[1;32m closed:\x1b[0m 0",
        "\x1b[1;32m connected:\x1b[0m   12",
        "\x1b[1;32m closed:\x1b[0m 5",
        "service available:   YES",
    ]
    assert slowhttptest_summary(lines, 0) == (
        "exit 0, closed: 5, connected: 12, service available: YES"
    )
    assert slowhttptest_summary(["nothing"], 1) == "exit 1, no status line"
