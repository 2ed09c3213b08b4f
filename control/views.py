"""What operators and the fill planner read of the registry (docs/fleet-api.md).

Pure: each view is a fresh JSON-ready copy built from the registry's records, safe to encode
in another thread. GET /v1/appliances shows `appliances_view`; GET /v1/fleet `fleet_view`;
a served manifest splices in `sources`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from control.registry import Registry
from edgefleet.fleet import ApplianceState


def appliances_view(registry: Registry, now: float) -> list[dict[str, Any]]:
    """What operators see in GET /v1/appliances; *now* is the registry's clock."""
    threshold = registry.topology.fleet.saturation_threshold
    out = []
    for rec in registry.records.values():
        out.append(
            {
                "name": rec.spec.name,
                "site": rec.spec.site,
                "base_url": rec.base_url,
                "state": rec.state(threshold).value,
                "reported_state": rec.reported.value,
                "admin_drain": rec.admin_drain,
                "registered": rec.registered,
                "last_heartbeat_age_s": (
                    None if rec.last_seen is None else round(now - rec.last_seen, 3)
                ),
                "heartbeats": rec.heartbeats,
                "software": rec.software,
                "boot_id": rec.boot_id,
                "load": round(rec.load(), 4),
                "health": rec.health.to_json(),
                "prefixes": list(rec.prefixes),
                "inventory_version": rec.inventory_version if rec.inventory_known else None,
                "inventory_size": len(rec.inventory),
            }
        )
    return out


def sources(registry: Registry, names: Iterable[str]) -> tuple[dict[str, str], dict[str, str]]:
    """(base URL, state) of each named appliance as control sees it now.

    Names the topology no longer has are reported `down` with no URL: the agent skips them.
    """
    threshold = registry.topology.fleet.saturation_threshold
    records = registry.records
    urls: dict[str, str] = {}
    states: dict[str, str] = {}
    for name in sorted(set(names)):
        rec = records.get(name)
        if rec is None:
            states[name] = ApplianceState.DOWN.value
            continue
        if rec.base_url:
            urls[name] = rec.base_url
        states[name] = rec.state(threshold).value
    return urls, states


def fleet_view(registry: Registry) -> dict[str, Any]:
    """What the fill planner needs (GET /v1/fleet).

    `capacity_bytes` is the topology's when set, else the total of the non-failed disks
    the appliance last reported (0 before its first heartbeat); `free_bytes` always comes
    from the heartbeats.
    """
    topology = registry.topology
    threshold = topology.fleet.saturation_threshold
    appliances = []
    inventories: dict[str, list[str]] = {}
    for rec in registry.records.values():
        disks = [d for d in rec.health.disks if not d.failed]
        reported = sum(d.total_bytes for d in disks)
        appliances.append(
            {
                "name": rec.spec.name,
                "site": rec.spec.site,
                "state": rec.state(threshold).value,
                "base_url": rec.base_url,
                "weight": rec.spec.weight,
                "capacity_bytes": rec.spec.capacity_bytes or reported,
                "free_bytes": sum(d.free_bytes for d in disks),
            }
        )
        if rec.inventory_known:
            inventories[rec.spec.name] = sorted(rec.inventory)
    return {
        "regions": [r.name for r in topology.regions],
        "sites": [
            {"name": s.name, "region": s.region, "role": s.role, "costs": dict(s.costs)}
            for s in topology.sites
        ],
        "appliances": appliances,
        "inventories": inventories,
    }
