"""The snapshot document and its encoding, cached per version (control.snapshot)."""

from __future__ import annotations

import json

from control.registry import Registry
from control.snapshot import SnapshotEncoder, build_contents, snapshot_head
from tests.control.test_registry import full, hb, topo


def test_snapshot_is_cached_per_version_and_json_matches() -> None:
    reg = Registry(topo(), first_version=100)
    reg.heartbeat("ams1-a", hb(inventory=full(1, "a.mp4")), 0.0)
    first = reg.snapshot(1.0)
    assert reg.snapshot(2.0) is first and first["generated_at"] == 1.0
    assert json.loads(reg.snapshot_json(3.0)) == first
    assert first["version"] == reg.version > 100
    reg.heartbeat("ams1-b", hb(), 0.0)
    second = reg.snapshot(4.0)
    assert second["version"] == first["version"] + 1
    assert second["contents"] is first["contents"]  # inventories did not change


def test_contents_are_encoded_once_per_contents_version() -> None:
    reg = Registry(topo())
    reg.heartbeat("ams1-a", hb(inventory=full(1, "a.mp4")), 0.0)
    reg.heartbeat("lon1-a", hb(inventory=full(1, "a.mp4", "b.mp4")), 0.0)
    records = list(reg.records.values())
    assert build_contents(records) == {"a.mp4": [0, 2], "b.mp4": [2]}
    encoder = SnapshotEncoder()
    doc, full_json, head_only = encoder.encode(7, 3, 1.5, reg.topology, records)
    assert json.loads(full_json) == doc and doc["version"] == 7 and doc["contents_version"] == 3
    assert json.loads(head_only) == {
        **{k: v for k, v in doc.items() if k != "contents"},
        "contents_unchanged": True,
    }
    assert {k: doc[k] for k in snapshot_head(reg.topology, records)} == snapshot_head(
        reg.topology, records
    )
    # A new version with the same contents version reuses the contents and their bytes.
    again, full_again, _ = encoder.encode(8, 3, 2.5, reg.topology, records)
    assert again["contents"] is doc["contents"] and again["generated_at"] == 2.5
    assert full_again.endswith(full_json[full_json.index(b',"contents":') :])
