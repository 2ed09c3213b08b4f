"""One appliance's record and the state rules (docs/fleet-api.md, "State rules")."""

from __future__ import annotations

from control.appliance_state import ApplianceRecord, load_bucket, prefix_key
from control.topology import ApplianceSpec
from edgefleet.fleet import ApplianceState
from edgefleet.heartbeat import Health, ReportedState

SPEC = ApplianceSpec(name="a", site="s", base_url="http://127.0.0.1:9001")


def test_state_rules_in_order() -> None:
    rec = ApplianceRecord(SPEC)
    assert rec.state(0.9) is ApplianceState.DOWN  # never heard from
    rec.alive = True
    assert rec.state(0.9) is ApplianceState.UP
    rec.health = Health(cpu=0.95)
    assert rec.state(0.9) is ApplianceState.SATURATED
    rec.reported = ReportedState.DRAINING
    assert rec.state(0.9) is ApplianceState.DRAINING  # draining wins over saturated
    rec.spec = ApplianceSpec(
        name="a", site="s", base_url=""
    )  # no address: nobody can be sent there
    assert rec.state(0.9) is ApplianceState.DOWN
    rec.reported_base_url = "http://192.0.2.1:8080"
    assert rec.base_url == "http://192.0.2.1:8080" and rec.state(0.9) is ApplianceState.DRAINING


def test_load_is_the_bottleneck_with_the_topologys_capacity() -> None:
    rec = ApplianceRecord(ApplianceSpec(name="a", site="s", base_url="", nic_capacity_bps=1e9))
    rec.health = Health(cpu=0.2, nic_bps=5e8, nic_capacity_bps=1e10)
    assert rec.load() == 0.5  # the topology's 1 Gb/s, not the reported 10 Gb/s
    assert load_bucket(0.5) == 0.5 and load_bucket(0.026) == 0.05


def test_prefix_key_sorts_v4_before_v6_then_by_address() -> None:
    nets = ["2001:db8::/32", "10.0.0.0/16", "10.0.0.0/8", "9.0.0.0/8"]
    assert sorted(nets, key=prefix_key) == [
        "9.0.0.0/8",
        "10.0.0.0/8",
        "10.0.0.0/16",
        "2001:db8::/32",
    ]
