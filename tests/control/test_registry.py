"""The registry: heartbeats in, appliance states and a versioned snapshot out (time by hand)."""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from control.appliance_state import load_bucket
from control.registry import Registry, UnknownAppliance
from control.topology import Topology, parse_topology
from edgefleet.fleet import ApplianceState
from edgefleet.heartbeat import Heartbeat, Registration
from tests.control.controlproc import heartbeat_doc, topology_text

UP, DOWN = ApplianceState.UP, ApplianceState.DOWN
DRAINING, SATURATED = ApplianceState.DRAINING, ApplianceState.SATURATED


def topo(extra: str = "") -> Topology:
    return parse_topology(tomllib.loads(topology_text(2.0, extra)))


def hb(**kwargs: Any) -> Any:
    return Heartbeat.from_json(heartbeat_doc(**kwargs))


def full(version: int, *ids: str) -> dict[str, Any]:
    return {"version": version, "full": list(ids)}


def delta(
    base: int, version: int, added: tuple[str, ...] = (), removed: tuple[str, ...] = ()
) -> dict[str, Any]:
    return {"base": base, "version": version, "added": list(added), "removed": list(removed)}


def content(snap: dict[str, Any]) -> dict[str, Any]:
    """The snapshot without what changes on every build."""
    return {k: v for k, v in snap.items() if k not in ("version", "generated_at")}


def test_never_heard_from_is_down() -> None:
    reg = Registry(topo())
    snap = reg.snapshot(1000.0)
    assert [a["state"] for a in snap["appliances"]] == ["down"] * 4
    assert snap["contents"] == {} and snap["generated_at"] == 1000.0
    assert snap["heartbeat_interval_s"] == 2.0
    assert snap["sites"][0] == {
        "name": "ams1",
        "region": "eu-west",
        "lat": 52.37,
        "lon": 4.9,
        "prefixes": ["198.51.100.0/24", "2001:db8:1::/48"],
        "costs": {"lon1": 10.0},
        "role": "edge",
    }
    assert snap["appliances"][1] == {
        "name": "ams1-b",
        "site": "ams1",
        "base_url": "http://127.0.0.1:9002",
        "weight": 2.0,
        "state": "down",
        "load": 0.0,
    }


def test_register_heartbeat_and_contents() -> None:
    reg = Registry(topo())
    reply = reg.register("ams1-a", 0.0, Registration(software="0.1.0", boot_id="b1"))
    assert reply.to_json() == {"heartbeat_interval_s": 2.0, "inventory_version": 0}
    assert reg.state("ams1-a") is UP
    ok = reg.heartbeat("ams1-a", hb(inventory=full(5, "a.mp4", "b.mp4")), 1.0)
    assert ok.to_json() == {"heartbeat_interval_s": 2.0, "resync": False, "drain": False}
    reg.heartbeat("lon1-a", hb(inventory=full(9, "b.mp4")), 1.0)
    snap = reg.snapshot(5.0)
    assert snap["contents"] == {"a.mp4": [0], "b.mp4": [0, 2]}
    assert [a["state"] for a in snap["appliances"]] == ["up", "down", "up", "down"]
    assert reg.register("ams1-a", 2.0).inventory_version == 5
    assert reg.inventory("ams1-a") == (5, frozenset({"a.mp4", "b.mp4"}))
    assert reg.inventory("ams1-b") is None


def test_deltas_apply_only_on_the_held_version() -> None:
    reg = Registry(topo())
    reg.heartbeat("ams1-a", hb(inventory=full(5, "a", "b")), 0.0)
    assert not reg.heartbeat("ams1-a", hb(inventory=delta(5, 7, ("c",), ("a",))), 1.0).resync
    assert reg.inventory("ams1-a") == (7, frozenset({"b", "c"}))
    # A delta from a version control does not hold: keep the old view, ask for everything.
    assert reg.heartbeat("ams1-a", hb(inventory=delta(6, 8, ("d",))), 2.0).resync
    assert reg.inventory("ams1-a") == (7, frozenset({"b", "c"}))
    # Removed and re-added in one delta: present.
    reg.heartbeat("ams1-a", hb(inventory=delta(7, 9, ("b",), ("b",))), 3.0)
    assert reg.inventory("ams1-a") == (9, frozenset({"b", "c"}))


def test_versions_of_a_recreated_index_never_take_deltas() -> None:
    """An appliance whose index was wiped and rebuilt counts generations from 0 again: a
    version of the new index that equals the one control holds must not be trusted."""
    reg = Registry(topo())
    reg.heartbeat("ams1-a", hb(inventory={**full(5, "a", "b"), "epoch": "old"}), 0.0)
    assert reg.register("ams1-a", 1.0, Registration(inventory_epoch="new")).inventory_version == 0
    reply = reg.heartbeat("ams1-a", hb(inventory={**delta(5, 6, ("c",)), "epoch": "new"}), 2.0)
    assert reply.resync
    assert reg.inventory("ams1-a") == (5, frozenset({"a", "b"}))
    reg.heartbeat("ams1-a", hb(inventory={**full(6, "c"), "epoch": "new"}), 3.0)
    assert reg.inventory("ams1-a") == (6, frozenset({"c"}))
    assert reg.register("ams1-a", 4.0, Registration(inventory_epoch="new")).inventory_version == 6


def test_a_lost_reply_leads_to_a_resync_not_a_wrong_inventory() -> None:
    reg = Registry(topo())
    reg.heartbeat("ams1-a", hb(inventory=full(1)), 0.0)
    reg.heartbeat("ams1-a", hb(inventory=delta(1, 2, ("x",))), 1.0)  # the reply is lost
    # The appliance, still at base 1, has since removed x: its delta names nothing.
    assert reg.heartbeat("ams1-a", hb(inventory=delta(1, 3)), 2.0).resync
    assert reg.inventory("ams1-a") == (2, frozenset({"x"}))
    assert not reg.heartbeat("ams1-a", hb(inventory=full(3)), 3.0).resync
    assert reg.inventory("ams1-a") == (3, frozenset())


def test_first_heartbeat_registers_and_asks_for_a_full_inventory() -> None:
    reg = Registry(topo())  # as after a control restart
    reply = reg.heartbeat("ams1-a", hb(inventory=delta(40, 41, ("x",))), 0.0)
    assert reply.resync and reg.state("ams1-a") is UP
    assert reg.heartbeat("nyc1-a", hb(), 0.0).resync  # no inventory at all yet
    assert not reg.heartbeat("nyc1-a", hb(inventory=full(0)), 0.5).resync
    assert not reg.heartbeat("nyc1-a", hb(), 1.0).resync


def test_down_after_missed_heartbeats_and_back() -> None:
    reg = Registry(topo())
    reg.heartbeat("ams1-a", hb(), 10.0)
    assert reg.tick(15.9) == [] and reg.state("ams1-a") is UP
    assert reg.tick(16.1) == ["ams1-a"] and reg.state("ams1-a") is DOWN
    assert reg.tick(20.0) == []
    reg.heartbeat("ams1-a", hb(), 21.0)
    assert reg.state("ams1-a") is UP


def test_next_down_at_is_when_the_first_silent_appliance_passes_its_limit() -> None:
    """Control's tick sleeps until then (not a whole tick period), so an appliance that died
    right after a heartbeat leaves the fleet view within the limit, not the limit + a tick."""
    reg = Registry(topo())
    assert reg.next_down_at() is None  # never heard from anyone: nothing to wait for
    reg.heartbeat("ams1-a", hb(), 10.0)
    reg.heartbeat("nyc1-a", hb(), 11.0)
    limit = reg.topology.fleet.down_after_s
    assert reg.next_down_at() == 10.0 + limit
    assert reg.tick(10.0 + limit + 0.001) == ["ams1-a"]
    assert reg.next_down_at() == 11.0 + limit  # a down appliance no longer counts
    reg.tick(11.0 + limit + 0.001)
    assert reg.next_down_at() is None


def test_drain_by_operator_or_self_report() -> None:
    reg = Registry(topo(), drains=["ams1-b", "gone"])
    assert reg.drained() == {"ams1-b"}
    assert reg.heartbeat("ams1-b", hb(), 0.0).drain
    assert reg.state("ams1-b") is DRAINING
    assert reg.set_drain("ams1-b", False) and not reg.set_drain("ams1-b", False)
    assert reg.state("ams1-b") is UP
    reg.heartbeat("ams1-b", hb(state="draining"), 1.0)
    assert reg.state("ams1-b") is DRAINING
    with pytest.raises(UnknownAppliance):
        reg.set_drain("gone", True)


def test_saturation_from_load_or_self_report() -> None:
    reg = Registry(topo())
    reg.heartbeat("ams1-b", hb(cpu=0.95), 0.0)
    assert reg.state("ams1-b") is SATURATED
    reg.heartbeat("ams1-b", hb(state="saturated", cpu=0.1), 1.0)
    assert reg.state("ams1-b") is SATURATED
    # NIC ratio against the topology's capacity (1e10 for ams1-a), not the reported one.
    doc = heartbeat_doc(cpu=0.1)
    doc["health"].update(nic_bps=9.5e9, nic_capacity_bps=1e12)
    reg.heartbeat("ams1-a", Heartbeat.from_json(doc), 1.0)
    assert reg.state("ams1-a") is SATURATED
    assert reg.snapshot(0.0)["appliances"][0]["load"] == 0.95
    # ams1-b has no topology capacity: the reported one counts.
    doc["health"].update(nic_bps=5e8, nic_capacity_bps=1e9)
    reg.heartbeat("ams1-b", Heartbeat.from_json(doc), 2.0)
    assert reg.state("ams1-b") is UP
    assert reg.snapshot(0.0)["appliances"][1]["load"] == 0.5


def test_load_noise_does_not_bump_the_version() -> None:
    reg = Registry(topo())
    reg.heartbeat("ams1-a", hb(cpu=0.31), 0.0)
    v = reg.version
    for i, cpu in enumerate((0.30, 0.32, 0.314, 0.29)):
        reg.heartbeat("ams1-a", hb(cpu=cpu), 1.0 + i)
    assert reg.version == v
    reg.heartbeat("ams1-a", hb(cpu=0.4), 9.0)
    assert reg.version == v + 1
    assert load_bucket(0.4) == 0.4 and load_bucket(0.024) == 0.0 and load_bucket(1.26) == 1.25


def test_learned_prefixes_join_the_site() -> None:
    reg = Registry(topo())
    reg.heartbeat("ams1-a", hb(), 0.0)
    reg.heartbeat("lon1-a", hb(prefixes=["203.0.113.128/25", "10.1.0.0/16"]), 0.0)
    v = reg.version
    assert reg.snapshot(0.0)["sites"][1]["prefixes"] == [
        "10.1.0.0/16",
        "203.0.113.0/25",
        "203.0.113.128/25",
    ]
    # Learning a prefix the site already lists changes nothing steering sees.
    reg.heartbeat("ams1-a", hb(prefixes=["198.51.100.0/24"]), 0.0)
    assert reg.version == v
    reg.heartbeat("ams1-a", hb(prefixes=["10.9.0.0/16"]), 0.0)
    assert reg.version == v + 1
    assert "10.9.0.0/16" in reg.snapshot(0.0)["sites"][0]["prefixes"]


def test_topology_reload_keeps_soft_state() -> None:
    reg = Registry(topo())
    reg.heartbeat("lon1-a", hb(inventory=full(3, "x")), 0.0)
    v = reg.version
    assert not reg.set_topology(topo())
    assert reg.version == v
    extra = '[[appliances]]\nname = "lon1-b"\nsite = "lon1"\nbase_url = "http://127.0.0.1:9005"\n'
    assert reg.set_topology(topo(extra), drains=["lon1-b"])
    snap = reg.snapshot(0.0)
    assert [a["name"] for a in snap["appliances"]][-1] == "lon1-b"
    assert reg.state("lon1-a") is UP and reg.state("lon1-b") is DOWN
    assert reg.drained() == {"lon1-b"}
    smaller = Topology(
        fleet=reg.topology.fleet,
        regions=reg.topology.regions,
        sites=reg.topology.sites,
        appliances=reg.topology.appliances[2:],
    )
    assert reg.set_topology(smaller)
    assert reg.snapshot(0.0)["contents"] == {"x": [0]}
    with pytest.raises(UnknownAppliance):
        reg.heartbeat("ams1-a", hb(), 0.0)


# -- properties ------------------------------------------------------------------------------

# Two appliances of the four talk (the others stay silent): sequences that matter, such as
# "change, lost reply, change, heartbeat" on one appliance, come up often.
NAMES = ("ams1-a", "lon1-a")
IDS = st.sampled_from(["a.mp4", "b.mp4"])
WHO = st.integers(0, len(NAMES) - 1)


@dataclass
class FakeAppliance:
    """An appliance's side of the inventory protocol, with its true file list per version."""

    files: set[str] = field(default_factory=set)
    version: int = 0
    history: dict[int, frozenset[str]] = field(default_factory=lambda: {0: frozenset()})
    acked: int | None = None  # the version control confirmed holding

    def change(self, add: set[str], remove: set[str]) -> None:
        self.files = (self.files - remove) | add
        self.version += 1
        self.history[self.version] = frozenset(self.files)

    def update(self) -> dict[str, Any]:
        if self.acked is None:
            return full(self.version, *sorted(self.files))
        old = self.history[self.acked]
        return delta(self.acked, self.version, tuple(self.files - old), tuple(old - self.files))


OP_ARGS: dict[str, st.SearchStrategy[tuple[Any, ...]]] = {
    "heartbeat": st.tuples(
        WHO,
        st.sampled_from([0.1, 0.11, 0.5, 0.95]),  # cpu: 0.1 and 0.11 share a load bucket
        st.sampled_from(["serving", "serving", "draining", "saturated"]),
        st.booleans(),  # the reply is lost
        # learned routes: none, one of its site's own (no visible change), a new one
        st.sampled_from(
            [[], ["198.51.100.0/24"], ["10.9.0.0/16"], ["10.9.0.0/16", "2001:db8::/32"]]
        ),
    ),
    # One id added or removed: changes often revert each other, which is what exposes a
    # delta applied to the wrong base.
    "change": st.tuples(WHO, IDS, st.booleans()),
    "time": st.tuples(st.floats(0.0, 5.0)),
    "drain": st.tuples(WHO, st.booleans()),
    "register": st.tuples(WHO),
    "restart": st.tuples(),
}
# Weighted by listing: heartbeats and changes are the protocol; restarts wipe soft state.
KINDS = ["heartbeat"] * 6 + ["change"] * 4 + ["time"] * 2 + ["drain", "register", "restart"]
OPS = st.sampled_from(KINDS).flatmap(lambda kind: OP_ARGS[kind].map(lambda args: (kind, *args)))


@settings(max_examples=300, deadline=None)
@given(st.lists(OPS, min_size=20, max_size=60))
def test_properties_over_any_message_sequence(ops: list[tuple[Any, ...]]) -> None:
    """Down is never shown as up; inventories match the truth; version bumps iff content changes."""
    topology = topo()
    limit = topology.fleet.down_after_s
    reg = Registry(topology)
    fakes = [FakeAppliance() for _ in NAMES]
    last_contact: dict[str, float] = {}
    now = 0.0
    before = content(reg.snapshot(now))
    for op in ops:
        v = reg.version
        if op[0] == "heartbeat":
            _, i, cpu, state, lost, prefixes = op
            fake = fakes[i]
            doc = heartbeat_doc(cpu=cpu, state=state, inventory=fake.update(), prefixes=prefixes)
            reply = reg.heartbeat(NAMES[i], Heartbeat.from_json(doc), now)
            last_contact[NAMES[i]] = now
            if not lost:
                fake.acked = None if reply.resync else fake.version
                if not reply.resync:
                    assert reg.inventory(NAMES[i]) == (fake.version, frozenset(fake.files))
        elif op[0] == "change":
            _, i, cid, add = op
            fakes[i].change({cid} if add else set(), set() if add else {cid})
        elif op[0] == "time":
            now += op[1]
            reg.tick(now)
        elif op[0] == "drain":
            reg.set_drain(NAMES[op[1]], op[2])
        elif op[0] == "register":
            reply = reg.register(NAMES[op[1]], now)
            last_contact[NAMES[op[1]]] = now
            fake = fakes[op[1]]
            # What the appliance does with the answer: a delta from the held version if it
            # still knows that version, else everything.
            held = reply.inventory_version
            fake.acked = held if held in fake.history and held else None
        else:  # control restarts: soft state gone, drains kept
            reg = Registry(topology, drains=reg.drained(), first_version=reg.version + 1)
            last_contact.clear()
            before = content(reg.snapshot(now))
            continue
        snap = reg.snapshot(now, fresh=True)
        # What steering is served (cached per version) is what the state says right now.
        assert content(json.loads(reg.snapshot_json(now))) == content(snap)
        for a in snap["appliances"]:  # the silent two included
            seen = last_contact.get(a["name"])
            if seen is None or now - seen > limit:
                assert a["state"] == "down", (a, seen, now)
        after = content(snap)
        assert (reg.version != v) == (after != before), (op, before, after)
        before = after
