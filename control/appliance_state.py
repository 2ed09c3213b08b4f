"""One appliance as control knows it, and the state rules (docs/fleet-api.md, "State rules").

Pure: the registry (control.registry) changes these records; the snapshot
(control.snapshot) and the operator and fill views (control.views) read them.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from control.topology import ApplianceSpec
from edgefleet.fleet import ApplianceState
from edgefleet.heartbeat import Health, ReportedState

# Loads are published rounded to this step: heartbeat noise must not bump the version.
LOAD_STEP = 0.05


@dataclass(slots=True)
class ApplianceRecord:
    """One appliance as control knows it: durable intent, then soft state from heartbeats."""

    spec: ApplianceSpec
    # Durable (the store holds it): the operator's drain flag.
    admin_drain: bool = False
    # Soft state, rebuilt from heartbeats after a control restart.
    alive: bool = False
    registered: bool = False
    last_seen: float | None = None
    software: str = ""
    boot_id: str = ""
    reported_base_url: str = ""  # where the appliance says it serves (topology's wins)
    reported: ReportedState = ReportedState.SERVING
    health: Health = field(default_factory=Health)
    heartbeats: int = 0
    prefixes: tuple[str, ...] = ()
    # The content ids at `inventory_version`; meaningless until `inventory_known`.
    inventory: set[str] = field(default_factory=set)
    inventory_version: int = 0
    inventory_epoch: str = ""  # the appliance index's id the version belongs to
    inventory_known: bool = False

    def load(self) -> float:
        """max(cpu, nic ratio); the topology's capacity wins over the reported one."""
        h = self.health
        capacity = self.spec.nic_capacity_bps or h.nic_capacity_bps
        nic = h.nic_bps / capacity if capacity > 0 else 0.0
        return max(h.cpu, nic, 0.0)

    @property
    def base_url(self) -> str:
        """Where clients fetch from: the topology's URL, else the one the appliance reported."""
        return self.spec.base_url or self.reported_base_url

    def state(self, threshold: float) -> ApplianceState:
        """The effective state (docs/fleet-api.md, "State rules")."""
        if not self.alive or not self.base_url:  # no address: nobody can be sent there
            return ApplianceState.DOWN
        if self.admin_drain or self.reported is ReportedState.DRAINING:
            return ApplianceState.DRAINING
        if self.reported is ReportedState.SATURATED or self.load() >= threshold:
            return ApplianceState.SATURATED
        return ApplianceState.UP


def load_bucket(load: float) -> float:
    """*load* rounded to LOAD_STEP, as published in the snapshot."""
    return round(round(load / LOAD_STEP) * LOAD_STEP, 2)


def prefix_key(text: str) -> tuple[int, int, int]:
    """Sort key of an address prefix: IPv4 before IPv6, then by address and length."""
    net = ipaddress.ip_network(text)
    return (net.version, int(net.network_address), net.prefixlen)
