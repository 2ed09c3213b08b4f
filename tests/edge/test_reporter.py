"""The appliance's inventory reports: deltas from the index change log, full lists on resync."""

from __future__ import annotations

import json
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from control.cli import main as control_main
from edge.index import ContentIndex, NewFile
from edge.popularity import spool_dir, write_spool
from edge.reporter import InventoryTracker
from edgefleet.records import read_popularity
from tests.control.controlproc import ControlFiles, ControlProcess
from tests.edge.edgeproc import EdgeProcess, request


def _file(cid: str) -> NewFile:
    return NewFile(cid, "d0", f"00/{cid}", 10, "0" * 32, "application/octet-stream", 1)


def test_first_report_is_full_then_deltas(tmp_path: Path) -> None:
    index = ContentIndex(tmp_path / "index", max_changes=100)
    try:
        index.put_many([_file("a"), _file("b")])
        tracker = InventoryTracker(index)
        epoch = tracker.epoch
        assert len(epoch) == 32
        first = tracker.next_update()
        assert first.to_json() == {"epoch": epoch, "version": 2, "full": ["a", "b"]}
        tracker.acknowledged(first, resync=False)
        index.put(_file("c"))
        index.delete("a")
        index.put(_file("a"))
        index.delete("b")
        delta = tracker.next_update()
        assert delta.to_json() == {
            "epoch": epoch,
            "base": 2,
            "version": 6,
            "added": ["a", "c"],
            "removed": ["b"],
        }
        tracker.acknowledged(delta, resync=False)
        assert tracker.next_update().to_json() == {
            "epoch": epoch,
            "base": 6,
            "version": 6,
            "added": [],
            "removed": [],
        }
        # Control lost track: it asks for everything again.
        tracker.acknowledged(delta, resync=True)
        assert tracker.next_update().to_json() == {"epoch": epoch, "version": 6, "full": ["a", "c"]}
    finally:
        index.close()


def test_change_log_trimmed_past_held_version_sends_full(tmp_path: Path) -> None:
    index = ContentIndex(tmp_path / "index", max_changes=3)
    try:
        tracker = InventoryTracker(index)
        index.put(_file("a"))
        tracker.acknowledged(tracker.next_update(), resync=False)
        for cid in ("b", "c", "d", "e"):
            index.put(_file(cid))
        assert tracker.next_update().to_json() == {
            "epoch": tracker.epoch,
            "version": 5,
            "full": ["a", "b", "c", "d", "e"],
        }
    finally:
        index.close()


def test_a_recreated_index_has_another_epoch(tmp_path: Path) -> None:
    first = ContentIndex(tmp_path / "one")
    second = ContentIndex(tmp_path / "two")
    try:
        assert first.index_id() != second.index_id()
        again = first.index_id()
    finally:
        first.close()
        second.close()
    reopened = ContentIndex(tmp_path / "one")
    try:
        assert reopened.index_id() == again  # stable for the life of the index
    finally:
        reopened.close()


# -- the fleet's own popularity, end to end: real edge, real control ------------------------


def _popularity(control: ControlProcess) -> dict[tuple[str, str], int]:
    """(region, content id) → bytes, over yesterday..tomorrow (the test may cross midnight)."""
    today = datetime.now(UTC).date()
    span = f"from={today - timedelta(days=1)}&to={today + timedelta(days=1)}&format=jsonl"
    status, _, body = control.call("GET", f"/v1/popularity?{span}", role="admin")
    assert status == 200, body
    out: dict[tuple[str, str], int] = {}
    for line in str(body or "").splitlines():
        doc = json.loads(line)
        key = (doc["region"], doc["content_id"])
        out[key] = out.get(key, 0) + doc["bytes_streamed"]
    return out


def _wait_for(control: ControlProcess, want: dict[tuple[str, str], int]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if _popularity(control) == want:
            return
        time.sleep(0.2)
    raise AssertionError(f"popularity {_popularity(control)} never became {want}")


def test_served_bytes_reach_control_and_the_export(tmp_path: Path) -> None:
    files = ControlFiles(tmp_path / "control", interval_s=0.3)
    control = ControlProcess(files).start()
    edge = EdgeProcess(
        tmp_path / "edge",
        {"a.mp4": b"x" * 1000, "b.mp4": b"y" * 300},
        tokens=False,
        extra_config=(
            f'[control]\nurl = "http://127.0.0.1:{control.port}"\n'
            f'appliance = "lon1-a"\nsecret_file = "{files.secret_path}"\n'
        ),
    )
    spool = spool_dir(edge.root / "run")
    try:
        edge.start()
        # Counted by the server itself: one whole response, one range of 100 bytes.
        assert request(edge.port, "/c/a.mp4")[0] == 200
        assert request(edge.port, "/c/b.mp4", {"Range": "bytes=0-99"})[0] == 206
        # Spooled by a (pretend) worker.
        write_spool(spool, 7, 4242, 1, {b"a.mp4": 500, b"c.mp4": 20})
        _wait_for(
            control,
            {("eu-west", "a.mp4"): 1500, ("eu-west", "b.mp4"): 100, ("eu-west", "c.mp4"): 20},
        )
        deadline = time.monotonic() + 10
        while list(spool.glob("*.json")) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert list(spool.glob("*.json")) == []  # acknowledged files are gone

        # Control stops (SIGTERM: the buffered counts are written); counts spooled meanwhile
        # stay on the edge, and nothing acknowledged is lost when control comes back.
        port = control.port
        assert control.stop() == 0
        write_spool(spool, 7, 4242, 2, {b"c.mp4": 5})
        time.sleep(1.0)  # several heartbeat intervals fail: the file must stay
        assert [p.name for p in spool.glob("*.json")] == ["7-4242-2.json"]
        out = tmp_path / "offline.csv"
        store = files.root / "control.sqlite3"
        cli = ["export-popularity", "--from", "2000-01-01", "--to", "2100-01-01"]
        assert control_main([*cli, "--store", str(store), "--out", str(out)]) == 0
        rows = {(r.region, r.content_id): r.bytes_streamed for r in read_popularity(out)}
        assert rows == {
            ("eu-west", "a.mp4"): 1500,
            ("eu-west", "b.mp4"): 100,
            ("eu-west", "c.mp4"): 20,
        }
        # Back on the same port (the edge's configured control URL).
        text = files.config_path.read_text().replace("port = 0", f"port = {port}")
        files.config_path.write_text(text)
        control = ControlProcess(files).start()
        _wait_for(
            control,
            {("eu-west", "a.mp4"): 1500, ("eu-west", "b.mp4"): 100, ("eu-west", "c.mp4"): 25},
        )
        out = tmp_path / "export.jsonl"
        secret = str(files.secret_path)
        url = f"http://127.0.0.1:{control.port}"
        assert (
            control_main([*cli, "--control", url, "--secret-file", secret, "--out", str(out)]) == 0
        )
        records = list(read_popularity(out))
        assert {(r.region, r.content_id): r.bytes_streamed for r in records} == {
            ("eu-west", "a.mp4"): 1500,
            ("eu-west", "b.mp4"): 100,
            ("eu-west", "c.mp4"): 25,
        }
        assert all(r.day == datetime.now(UTC).date() or r.day == date.today() for r in records)
    finally:
        edge.stop()
        control.stop()
