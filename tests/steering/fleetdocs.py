"""Snapshot documents for steering tests, in control's format (docs/fleet-api.md)."""

from __future__ import annotations

from typing import Any


def site(
    name: str,
    prefixes: list[str],
    lat: float = 0.0,
    lon: float = 0.0,
    costs: dict[str, float] | None = None,
) -> dict[str, Any]:
    """One site entry."""
    return {
        "name": name,
        "region": "r",
        "lat": lat,
        "lon": lon,
        "prefixes": prefixes,
        "costs": costs or {},
    }


def appliance(
    name: str, site_name: str, state: str = "up", load: float = 0.0, weight: float = 1.0
) -> dict[str, Any]:
    """One appliance entry; base_url is derived from the name."""
    return {
        "name": name,
        "site": site_name,
        "base_url": f"http://{name}.example:8080",
        "weight": weight,
        "state": state,
        "load": load,
    }


def two_sites(version: int = 1, states: dict[str, str] | None = None) -> dict[str, Any]:
    """ams1 (ams1-a, ams1-b) and lon1 (lon1-a), far away par1 with no appliances."""
    states = states or {}
    names = [("ams1-a", "ams1"), ("ams1-b", "ams1"), ("lon1-a", "lon1")]
    return {
        "version": version,
        "generated_at": 1795561724.5,
        "heartbeat_interval_s": 2.0,
        "sites": [
            site("ams1", ["198.51.100.0/24", "2001:db8:1::/48"], 52.37, 4.9, {"lon1": 10}),
            site("lon1", ["203.0.113.0/24"], 51.5, -0.12),
            site("par1", ["192.0.2.0/25"], 48.85, 2.35),
        ],
        "appliances": [appliance(n, s, states.get(n, "up")) for n, s in names],
        "contents": {
            "both.mp4": [0, 1, 2],
            "ams.mp4": [0, 1],
            "ams-a.mp4": [0],
            "lon.mp4": [2],
        },
    }
