"""`python -m bench.chaos` end to end: a short drill against a real fleet (bench/chaos/drill.py
and everything around it)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_a_short_drill_meets_its_targets(tmp_path: Path) -> None:
    """About 36 s of load: an edge hung, one drained, one killed (seed 2 places all three,
    in both sites), none felt by a viewer."""
    out = tmp_path / "results"
    run = subprocess.run(
        [sys.executable, "-m", "bench.chaos", "--duration", "36", "--users", "4",
         "--seed", "2", "--faults", "edge-kill,edge-stop,edge-drain", "--hold-scale", "0.6",
         "--settle", "4", "--out", str(out), "--work", str(tmp_path / "fleet")],
        capture_output=True, text=True, timeout=110, check=False,
    )  # fmt: skip
    print(run.stdout)
    assert (out / "report.md").exists(), run.stderr
    doc = json.loads((out / "report.json").read_text())
    assert (out / "timeline.png").read_bytes().startswith(b"\x89PNG")
    kinds = {f["kind"] for f in doc["faults"]}
    assert kinds == {"edge-kill", "edge-stop", "edge-drain"}
    assert doc["sessions"]["sessions"] >= 4
    assert doc["sessions"]["failed"] == 0, doc["sessions"]["errors"]
    assert doc["wrong_bytes"] == 0, doc["wrong_examples"]
    for f in doc["faults"]:
        assert f["out_of_steering_s"] is not None, f
        assert f["out_of_steering_s"] <= doc["bound_s"], f
    assert doc["pass"] is True
    assert run.returncode == 0, run.stderr
