"""The runtime directory: its files, written whole, and the fill agent's status document."""

from __future__ import annotations

import json
from pathlib import Path

from edge.runtime import (
    FillStatus,
    fill_status_file,
    read_fill_status,
    read_json,
    read_worker_snapshots,
    supervisor_file,
    worker_file,
    write_fill_status,
    write_json_atomic,
)
from tests.edge.test_metrics import busy_worker


def test_snapshot_files(tmp_path: Path) -> None:
    run = tmp_path / "run"
    write_json_atomic(worker_file(run, 0), busy_worker(1).to_json())
    write_json_atomic(worker_file(run, 1), busy_worker(2).to_json())
    write_json_atomic(worker_file(run, 1), busy_worker(3).to_json())  # replaced whole
    worker_file(run, 2).write_text('{"requests": ')  # torn by a crash: skipped
    worker_file(run, 3).write_text("[1, 2]")  # not an object: skipped
    write_json_atomic(supervisor_file(run), {"workers_alive": 2})
    snaps = read_worker_snapshots(run)
    assert [s["connections_total"] for s in snaps] == [10, 30]
    assert read_json(supervisor_file(run)) == {"workers_alive": 2}
    assert read_json(run / "metrics" / "absent.json") is None
    assert sorted(p.name for p in (run / "metrics").iterdir()) == [
        "supervisor.json",
        "worker-0.json",
        "worker-1.json",
        "worker-2.json",
        "worker-3.json",
    ]  # no temporary files left behind


def test_no_metrics_directory_yet(tmp_path: Path) -> None:
    assert read_worker_snapshots(tmp_path / "run") == []


def test_fill_status_round_trips_through_its_file(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert read_fill_status(run) is None  # never filled
    status = FillStatus(
        running=True,
        bytes_to_go=5,
        bytes_done=10_000,
        rate_bytes_per_second=1234.5,
        errors={"peer": 3},
        misses={"origin": 1},
        added=2,
        deleted=1,
        failed=0,
        updated_at=1.7e9,
    )
    write_fill_status(run, status)
    assert read_fill_status(run) == status
    doc = json.loads(fill_status_file(run).read_text())
    assert doc["running"] == 1 and doc["bytes_done"] == 10_000  # the layout /metrics reads
    assert [p.name for p in run.iterdir()] == ["fill.json"]  # no temporary file left


def test_fill_status_reads_a_bad_field_as_zero() -> None:
    status = FillStatus.from_doc(
        {"running": "yes", "bytes_done": [1], "errors": {"peer": "x", "origin": 2}, "extra": 1}
    )
    assert status == FillStatus(running=False, bytes_done=0, errors={"origin": 2})
    assert FillStatus.from_doc({"errors": ["peer"]}).errors == {}
