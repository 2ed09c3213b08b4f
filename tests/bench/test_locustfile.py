"""bench/locustfile.py under locust itself (its happy path and failover run in test_loadtest.py).

Locust is only ever run as a subprocess: importing it would monkey-patch this test process.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--segment-bytes", "0"], "--segment-bytes"),
        (["--titles", "a.bin+a.bin"], "a content id appears twice"),
        (["--steering-urls", "127.0.0.1:7080"], "--steering-urls"),
    ],
)
def test_a_bad_player_option_stops_locust_before_any_viewer_starts(
    args: list[str], needle: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "locust", "-f", "bench/locustfile.py", "--headless",
         "--host", "http://127.0.0.1:1", "-u", "1", "-t", "2s", *args],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert needle in result.stderr
    assert "Ramping" not in result.stderr  # stopped before spawning
