"""`make demo` is a user's first impression: it must start, serve a signed range, and stop."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_demo_serves_a_signed_range_and_stops_cleanly(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "edge.demo", "--data-dir", str(tmp_path), "--port", "0", "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "edgefleet demo: one edge appliance is running" in out
    assert "curl -sS" in out and "&t=" in out
    assert "check: GET range -> 206, 1000 bytes" in out
    assert out.rstrip().endswith("edgefleet edge: stopped")
