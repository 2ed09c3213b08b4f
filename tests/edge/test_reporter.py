"""The appliance's inventory reports: deltas from the index change log, full lists on resync."""

from __future__ import annotations

from pathlib import Path

from edge.index import ContentIndex, NewFile
from edge.reporter import InventoryTracker


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
        assert first == {"epoch": epoch, "version": 2, "full": ["a", "b"]}
        tracker.acknowledged(first, resync=False)
        index.put(_file("c"))
        index.delete("a")
        index.put(_file("a"))
        index.delete("b")
        delta = tracker.next_update()
        assert delta == {
            "epoch": epoch,
            "base": 2,
            "version": 6,
            "added": ["a", "c"],
            "removed": ["b"],
        }
        tracker.acknowledged(delta, resync=False)
        assert tracker.next_update() == {
            "epoch": epoch,
            "base": 6,
            "version": 6,
            "added": [],
            "removed": [],
        }
        # Control lost track: it asks for everything again.
        tracker.acknowledged(delta, resync=True)
        assert tracker.next_update() == {"epoch": epoch, "version": 6, "full": ["a", "c"]}
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
        assert tracker.next_update() == {
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
