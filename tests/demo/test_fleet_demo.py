"""`make demo` is a user's first impression: the night's plan and fills run, steering sends
players to the filled files, and everything stops cleanly."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path


def test_demo_plans_fills_steers_to_urls_that_play_and_stops(demo_run: tuple[Path, str]) -> None:
    data, out = demo_run
    assert "a fleet of 3 edges in 2 sites and an origin is running" in out
    for name in ("control", "steering", "origin-1", "ams1-a", "ams1-b", "lon1-a"):
        assert f"  {name}" in out
    # The plan: one row per edge site, published to control.
    assert re.search(r"^  ams1 +\d+ ", out, re.M) and re.search(r"^  lon1 +\d+ ", out, re.M)
    assert "published generation" in out
    # The fills: every edge got files, none failed, the origin served some.
    fills = re.findall(r"^  (\S+) +fill: (\d+) added, \d+ deleted, (\d+) failed.*$", out, re.M)
    assert {name for name, _, _ in fills} == {"ams1-a", "ams1-b", "lon1-a"}
    assert all(int(added) > 0 and failed == "0" for _, added, failed in fills), fills
    assert "origin-1=" in out
    # Steering sends the player to its own site, and the first URL plays.
    assert "curl -s http://127.0.0.1:" in out and "/v1/steer" in out
    assert "check: first URL -> 206, 65536 bytes" in out
    assert "check: answer classes local, local" in out
    assert out.rstrip().endswith("edgefleet demo: stopped")
    # What the plan promised is what the edges hold: manifests on disk match the report.
    report = json.loads((data / "plan" / "report.json").read_text())
    planned = {row["site"]: row["files"] for row in report["sites"]}
    assert set(planned) == {"ams1", "lon1"}


def test_a_second_demo_finds_nothing_to_change(demo_run: tuple[Path, str]) -> None:
    """Same data, same popularity: the plan moves nothing and the fills have nothing to do."""
    data, _ = demo_run
    result = subprocess.run(
        [sys.executable, "-m", "demo.fleet", "--data-dir", str(data), "--ports", "any",
         "--check"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )  # fmt: skip
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    fills = re.findall(r"^  \S+ +fill: (\d+) added, (\d+) deleted", out, re.M)
    assert fills == [("0", "0")] * 3, out
    rows = re.findall(r"^  (?:ams1|lon1) .*$", out, re.M)
    assert len(rows) == 2
    for row in rows:  # adds and deletes columns are 0
        cols = row.split()
        assert cols[7] == "0" and cols[10] == "0", row


def test_sigterm_stops_the_demo_and_every_service(demo_run: tuple[Path, str]) -> None:
    """Started by a script (no terminal for Ctrl-C), the demo stops cleanly on SIGTERM."""
    import signal
    import time

    import psutil

    data, _ = demo_run
    proc = subprocess.Popen(
        [sys.executable, "-m", "demo.fleet", "--data-dir", str(data), "--ports", "any"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 120
    for line in proc.stdout:
        if "Ctrl-C stops the fleet" in line:
            break
        assert time.monotonic() < deadline, "the demo never came up"
    children = psutil.Process(proc.pid).children(recursive=True)
    assert len(children) >= 6  # control, steering, origin, 3 edges (and their workers)
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, rest
    assert rest.rstrip().endswith("edgefleet demo: stopped")
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, alive


def test_the_demo_waits_for_every_filled_edge_not_the_first_answer(tmp_path: Path) -> None:
    """Edges report their fills one heartbeat at a time: an answer that lists only some of the
    appliances the plan filled is not the fleet's steady state, and the demo keeps waiting."""
    from demo.fleet import converged, planned_holders

    manifests = tmp_path / "manifests"
    manifests.mkdir()
    for name, ids in {"a": ["x", "y"], "b": ["x"], "c": ["z"]}.items():
        files = [{"id": i, "size": 1, "checksum": "0", "sources": []} for i in ids]
        (manifests / f"{name}.json").write_text(json.dumps({"appliance": name, "files": files}))
    holders = planned_holders(tmp_path, ["x", "y"])
    assert holders == {"x": {"a", "b"}, "y": {"a"}}

    def answer(**urls: list[str]) -> dict[str, object]:
        return {
            "results": [
                {"content_id": cid, "urls": [{"appliance": n} for n in names]}
                for cid, names in urls.items()
            ]
        }

    assert not converged(answer(x=["b"], y=["a"]), holders)  # a has not reported x yet
    assert not converged(answer(x=["a", "b"], y=[]), holders)  # nothing for y
    assert converged(answer(x=["b", "a"], y=["a"]), holders)
    assert converged(answer(x=["b", "a", "c"], y=["a", "c"]), holders)  # more is fine
