"""`make demo` is a user's first impression: the fleet starts, steers, serves, and stops."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_demo_fleet_steers_to_urls_that_play_and_stops_cleanly(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "demo.fleet", "--data-dir", str(tmp_path), "--ports", "any",
         "--check"],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )  # fmt: skip
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "a fleet of 3 edges in 2 sites is running" in out
    for name in ("control", "steering", "ams1-a", "ams1-b", "lon1-a"):
        assert f"  {name}" in out
    assert "curl -s http://127.0.0.1:" in out and "/v1/steer" in out
    assert "check: first URL -> 206, 65536 bytes" in out
    assert out.rstrip().endswith("edgefleet demo: stopped")
