"""The fleet snapshot steering pulls (docs/fleet-api.md): its document and its encoding.

Pure. `snapshot_head` is everything but version, time and contents (the registry compares
heads to decide whether a topology reload changed the snapshot); `build_contents` maps each
content id to the indexes of the appliances holding it. `SnapshotEncoder` encodes the
document once per version, and the contents — up to a million ids — once per contents
version, splicing the cached bytes in when only a state or a load changed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from control.appliance_state import ApplianceRecord, load_bucket, prefix_key
from control.topology import Topology


def snapshot_head(topology: Topology, records: Iterable[ApplianceRecord]) -> dict[str, Any]:
    """The snapshot without version, time and contents."""
    records = list(records)
    threshold = topology.fleet.saturation_threshold
    learned: dict[str, set[str]] = {}
    for rec in records:
        learned.setdefault(rec.spec.site, set()).update(rec.prefixes)
    sites = [
        {
            "name": s.name,
            "region": s.region,
            "lat": s.lat,
            "lon": s.lon,
            "prefixes": sorted(set(s.prefixes) | learned.get(s.name, set()), key=prefix_key),
            "costs": dict(s.costs),
            "role": s.role,
        }
        for s in topology.sites
    ]
    appliances = [
        {
            "name": rec.spec.name,
            "site": rec.spec.site,
            "base_url": rec.base_url,
            "weight": rec.spec.weight,
            "state": rec.state(threshold).value,
            "load": load_bucket(rec.load()),
        }
        for rec in records
    ]
    return {
        "heartbeat_interval_s": topology.fleet.heartbeat_interval_s,
        "sites": sites,
        "appliances": appliances,
    }


def build_contents(records: Iterable[ApplianceRecord]) -> dict[str, list[int]]:
    """Content id → indexes (in topology order) of the appliances holding it."""
    contents: dict[str, list[int]] = {}
    for index, rec in enumerate(records):
        for cid in rec.inventory:
            # Appliances are visited in index order, so every list comes out sorted.
            contents.setdefault(cid, []).append(index)
    return contents


class SnapshotEncoder:
    """The snapshot document and its JSON, built once per version (read them, never modify)."""

    def __init__(self) -> None:
        # (contents version, contents, their JSON)
        self._contents: tuple[int, dict[str, list[int]], bytes] | None = None
        # (version, document, full JSON, JSON with `"contents_unchanged": true` instead)
        self._snapshot: tuple[int, dict[str, Any], bytes, bytes] | None = None

    def encode(
        self,
        version: int,
        contents_version: int,
        wall_time: float,
        topology: Topology,
        records: Iterable[ApplianceRecord],
    ) -> tuple[dict[str, Any], bytes, bytes]:
        """(document, full JSON, JSON without contents) of *version*; *wall_time* stamps a
        version not encoded yet."""
        cached = self._snapshot
        if cached is not None and cached[0] == version:
            return cached[1], cached[2], cached[3]
        head = {
            "version": version,
            "generated_at": wall_time,
            "contents_version": contents_version,
            **snapshot_head(topology, records),
        }
        contents, contents_json = self._encoded_contents(contents_version, records)
        # Splice the cached contents encoding in: a million ids are not re-encoded when
        # only a state or a load changed.
        encoded = json.dumps(head, separators=(",", ":")).encode()
        body = encoded[:-1] + b',"contents":' + contents_json + b"}"
        head_only = encoded[:-1] + b',"contents_unchanged":true}'
        doc = {**head, "contents": contents}
        self._snapshot = (version, doc, body, head_only)
        return doc, body, head_only

    def _encoded_contents(
        self, contents_version: int, records: Iterable[ApplianceRecord]
    ) -> tuple[dict[str, list[int]], bytes]:
        cached = self._contents
        if cached is not None and cached[0] == contents_version:
            return cached[1], cached[2]
        contents = build_contents(records)
        encoded = json.dumps(contents, separators=(",", ":")).encode()
        self._contents = (contents_version, contents, encoded)
        return contents, encoded
