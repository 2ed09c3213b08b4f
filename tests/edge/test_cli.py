"""`edgefleet edge serve` and `edge init` (edge/cli.py): refusing to start on a bad config or a
missing index with one clear line, and preparing an empty appliance that then serves."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.edge.edgeproc import EdgeProcess, request
from tests.edge.processlife import (
    SMALL,
)

pytestmark = pytest.mark.slow


def _serve_once(edge: EdgeProcess) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgefleet.cli", "edge", "serve", "-c", str(edge.config_path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ("bogus_key = 1", "'bogus_key'"),
        ("[limits]\nheader_timeot_s = 1", "'limits.header_timeot_s'"),
        ('fd_cache_size = "two"', "'fd_cache_size'"),
        ("[limits]\nsend_timeout_s = 0", "'limits.send_timeout_s'"),
    ],
    ids=["unknown-key", "unknown-nested-key", "wrong-type", "bad-value"],
)
def test_bad_config_exits_2_naming_the_key(tmp_path: Path, extra: str, named: str) -> None:
    edge = EdgeProcess(tmp_path / "edge", {"small.bin": SMALL}, extra_config=extra)
    result = _serve_once(edge)
    assert result.returncode == 2, result.stderr
    assert named in result.stderr
    assert "config error" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("broken", ["missing", "empty"])
def test_missing_index_exits_1_with_one_line(tmp_path: Path, broken: str) -> None:
    edge = EdgeProcess(tmp_path / "edge", {"small.bin": SMALL})
    shutil.rmtree(edge.root / "index")
    if broken == "empty":
        (edge.root / "index").mkdir()
    result = _serve_once(edge)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "index" in lines[0]
    assert result.stdout == ""


def test_init_prepares_an_empty_appliance_that_then_serves(tmp_path: Path) -> None:
    """A new appliance: no index, fresh disks. `edge init` makes it servable (empty, 404 for
    everything) and leaves an existing index and disk ids alone when run again."""
    edge = EdgeProcess(tmp_path / "edge", {})
    shutil.rmtree(edge.root / "index")
    shutil.rmtree(edge.root / "disk0")
    refused = _serve_once(edge)
    assert refused.returncode == 1 and "edgefleet edge init" in refused.stderr
    init = [sys.executable, "-m", "edgefleet.cli", "edge", "init", "-c", str(edge.config_path)]
    first = subprocess.run(init, capture_output=True, text=True, timeout=60, check=True)
    assert "0 files" in first.stdout
    disk_id = (edge.root / "disk0" / ".edgefleet-disk").read_text().strip()
    again = subprocess.run(init, capture_output=True, text=True, timeout=60, check=True)
    assert disk_id in again.stdout and "0 files" in again.stdout
    edge.start()
    try:
        status, _, body = request(edge.port, edge.url("small.bin"))
        assert (status, body) == (404, b"no such content\n")
    finally:
        edge.stop()
