"""What operators and the fill planner read of the registry (control.views)."""

from __future__ import annotations

from control import views
from control.registry import Registry
from edgefleet.fleet import ApplianceState
from edgefleet.heartbeat import Heartbeat
from tests.control.controlproc import heartbeat_doc
from tests.control.test_registry import full, hb, topo

UP, DOWN = ApplianceState.UP, ApplianceState.DOWN


def test_counts_and_operator_view() -> None:
    reg = Registry(topo())
    reg.heartbeat("ams1-a", hb(inventory=full(2, "a", "b")), 5.0)
    counts = reg.counts()
    assert counts[UP] == 1 and counts[DOWN] == 3
    view = {a["name"]: a for a in views.appliances_view(reg, 6.5)}
    assert view["ams1-a"]["last_heartbeat_age_s"] == 1.5
    assert view["ams1-a"]["inventory_size"] == 2 and view["ams1-a"]["inventory_version"] == 2
    assert view["nyc1-a"]["last_heartbeat_age_s"] is None
    assert view["nyc1-a"]["inventory_version"] is None


def test_sources_are_live_urls_and_states_and_unknown_names_are_down() -> None:
    reg = Registry(topo())
    reg.heartbeat("ams1-a", hb(), 1.0)
    urls, states = views.sources(reg, ["gone", "ams1-a", "nyc1-a", "ams1-a"])
    assert list(states) == ["ams1-a", "gone", "nyc1-a"]  # sorted, once each
    assert states == {"ams1-a": "up", "gone": "down", "nyc1-a": "down"}
    assert "gone" not in urls and urls["ams1-a"] == reg.records["ams1-a"].base_url != ""


def test_fleet_view_capacity_is_the_topologys_else_the_reported_disks() -> None:
    reg = Registry(topo())
    disks = [
        {"id": "d0", "root": "/d0", "free_bytes": 5, "total_bytes": 10, "failed": False},
        {"id": "d1", "root": "/d1", "free_bytes": 7, "total_bytes": 70, "failed": True},
    ]
    doc = heartbeat_doc(inventory=full(1, "b", "a"))
    doc["health"]["disks"] = disks
    reg.heartbeat("ams1-a", Heartbeat.from_json(doc), 1.0)
    view = views.fleet_view(reg)
    ams1a = next(a for a in view["appliances"] if a["name"] == "ams1-a")
    spec = reg.topology.appliance("ams1-a")
    assert spec is not None
    assert ams1a["capacity_bytes"] == (spec.capacity_bytes or 10) and ams1a["free_bytes"] == 5
    assert view["inventories"] == {"ams1-a": ["a", "b"]}  # only inventories control holds
    assert view["regions"] == [r.name for r in reg.topology.regions]
