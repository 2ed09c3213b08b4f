"""Appliance states from heartbeats, and the versioned fleet snapshot steering pulls.

Pure: no asyncio, aiohttp or clock. Every method that depends on time takes `now`
(monotonic seconds) so tests drive time by hand. The rules are docs/fleet-api.md's:

- down: silent for `down_after_missed` times `heartbeat_interval_s`, or never heard from;
- draining: an operator's (durable) drain flag, or self-reported;
- saturated: self-reported, or load = max(cpu, nic_bps / capacity) ≥ saturation_threshold;
- up: otherwise.

The snapshot `version` bumps exactly when something in the snapshot changes (state, load
rounded to LOAD_STEP, site prefixes, inventory, topology), so that steering's conditional
GET is answered 304 while the fleet is steady. Inventories are per-appliance sets; the
`contents` map (content id → appliance indexes) is built only when a snapshot is requested
after an inventory changed.

One appliance's record and the state rules are control.appliance_state's; the snapshot
document and its cached encoding control.snapshot's; what operators and the fill planner
read, control.views'.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import Any

from control.appliance_state import ApplianceRecord, load_bucket, prefix_key
from control.snapshot import SnapshotEncoder, build_contents, snapshot_head
from control.topology import Topology
from edgefleet.fleet import ApplianceState
from edgefleet.heartbeat import (
    MAX_REGISTER_CHARS,
    Heartbeat,
    HeartbeatReply,
    InventoryUpdate,
    RegisterReply,
    Registration,
    is_http_url,
)


class UnknownAppliance(KeyError):
    """The name is not an appliance of the topology."""


class Registry:
    """Every appliance's state, and the snapshot built from them."""

    def __init__(
        self, topology: Topology, *, drains: Iterable[str] = (), first_version: int = 1
    ) -> None:
        self._topology = topology
        self._apps: dict[str, ApplianceRecord] = {}
        # Bumps whenever the snapshot changes; _contents_gen when `contents` changes.
        self._version = first_version
        # Like the version, it starts at the start time: a restarted control never reuses a
        # contents version that a steering replica holds for other contents.
        self._contents_gen = first_version
        self._encoder = SnapshotEncoder()
        self._install(topology, set(drains))

    # -- reading -------------------------------------------------------------------------

    @property
    def topology(self) -> Topology:
        """The topology in force."""
        return self._topology

    @property
    def version(self) -> int:
        """The current snapshot version."""
        return self._version

    def state(self, name: str) -> ApplianceState:
        """The effective state of appliance *name*."""
        return self._get(name).state(self._topology.fleet.saturation_threshold)

    def drained(self) -> set[str]:
        """Appliances an operator has drained."""
        return {name for name, rec in self._apps.items() if rec.admin_drain}

    def inventory(self, name: str) -> tuple[int, frozenset[str]] | None:
        """(version, content ids) held for *name*, or None when control holds none."""
        rec = self._get(name)
        return (rec.inventory_version, frozenset(rec.inventory)) if rec.inventory_known else None

    def counts(self) -> dict[ApplianceState, int]:
        """How many appliances are in each state."""
        out = dict.fromkeys(ApplianceState, 0)
        threshold = self._topology.fleet.saturation_threshold
        for rec in self._apps.values():
            out[rec.state(threshold)] += 1
        return out

    # -- appliance messages --------------------------------------------------------------

    def relearned(self) -> bool:
        """True once every appliance of the topology is alive with a known inventory."""
        return all(rec.alive and rec.inventory_known for rec in self._apps.values())

    def register(
        self,
        name: str,
        now: float,
        registration: Registration | None = None,
    ) -> RegisterReply:
        """An appliance (re)starts talking to control; registering is a sign of life."""
        registration = registration or Registration()
        rec = self._get(name)
        before = self._visible(rec)
        rec.registered, rec.alive, rec.last_seen = True, True, now
        rec.software, rec.boot_id = registration.software, registration.boot_id
        base_url = registration.base_url
        moved = bool(base_url) and base_url.rstrip("/") != rec.reported_base_url
        if moved:
            rec.reported_base_url = base_url.rstrip("/")
        self._changed(before, rec, other=moved and not rec.spec.base_url)
        # A version of another index (wiped, re-imported) means nothing: ask for everything.
        same_index = registration.inventory_epoch == rec.inventory_epoch
        held = rec.inventory_version if rec.inventory_known and same_index else 0
        return RegisterReply(self._topology.fleet.heartbeat_interval_s, held)

    def heartbeat(self, name: str, hb: Heartbeat, now: float) -> HeartbeatReply:
        """Apply one heartbeat; the first one from an unregistered appliance registers it."""
        rec = self._get(name)
        before = self._visible(rec)
        rec.registered, rec.alive, rec.last_seen = True, True, now
        rec.reported, rec.health = hb.state, hb.health
        rec.heartbeats += 1
        # Heartbeats repeat the base URL, so a restarted control learns it without a register.
        url = hb.base_url
        moved = (
            len(url) <= MAX_REGISTER_CHARS
            and is_http_url(url)
            and url.rstrip("/") != rec.reported_base_url
        )
        if moved:
            rec.reported_base_url = url.rstrip("/")
        url_changed = moved and not rec.spec.base_url
        prefixes_changed = False
        learned = self._normalise(hb.prefixes)
        if learned != rec.prefixes:
            # Learned prefixes show through their site's list: compare that list.
            site_before = self._site_prefixes(rec.spec.site)
            rec.prefixes = learned
            prefixes_changed = self._site_prefixes(rec.spec.site) != site_before
        applied, contents = self._apply_inventory(rec, hb.inventory)
        self._changed(before, rec, contents=contents, other=prefixes_changed or url_changed)
        return HeartbeatReply(
            heartbeat_interval_s=self._topology.fleet.heartbeat_interval_s,
            resync=not (applied and rec.inventory_known),
            drain=rec.admin_drain,
        )

    def _deadlines(self) -> Iterator[tuple[str, ApplianceRecord, float]]:
        """Every appliance heard from and still up, with when it is down if it stays silent."""
        limit = self._topology.fleet.down_after_s
        for name, rec in self._apps.items():
            if rec.alive and rec.last_seen is not None:
                yield name, rec, rec.last_seen + limit

    def next_down_at(self) -> float | None:
        """When the first appliance heard from and still up will be marked down if it stays
        silent (the registry's clock); None when there is none."""
        return min((due for _, _, due in self._deadlines()), default=None)

    def tick(self, now: float) -> list[str]:
        """Mark down the appliances silent for too long; returns their names."""
        gone = []
        for name, rec, due in self._deadlines():
            if now > due:
                before = self._visible(rec)
                rec.alive = False
                self._changed(before, rec)
                gone.append(name)
        return gone

    # -- operator actions ----------------------------------------------------------------

    def set_drain(self, name: str, drain: bool) -> bool:
        """Set the operator's drain flag; True when it changed."""
        rec = self._get(name)
        if rec.admin_drain == drain:
            return False
        before = self._visible(rec)
        rec.admin_drain = drain
        self._changed(before, rec)
        return True

    def set_topology(self, topology: Topology, *, drains: Iterable[str] = ()) -> bool:
        """Switch to a reloaded topology, keeping the soft state of appliances still in it.

        Returns True when the snapshot changed.
        """
        head_before = snapshot_head(self._topology, self._apps.values())
        names_before = list(self._apps)
        self._install(topology, set(drains))
        if list(self._apps) != names_before:  # indexes in `contents` moved
            self._contents_gen += 1
        if snapshot_head(self._topology, self._apps.values()) == head_before:
            return False
        self._version += 1
        return True

    # -- snapshot ------------------------------------------------------------------------

    def snapshot(self, wall_time: float, *, fresh: bool = False) -> dict[str, Any]:
        """The snapshot document (docs/fleet-api.md); *wall_time* stamps a new version.

        The document is cached per version: read it, do not modify it. *fresh* builds it
        anew without touching the caches (to check them).
        """
        if fresh:
            contents = build_contents(self._apps.values())
            return {
                "version": self._version,
                "generated_at": wall_time,
                "contents_version": self._contents_gen,
                **snapshot_head(self._topology, self._apps.values()),
                "contents": contents,
            }
        return self._encode(wall_time)[0]

    @property
    def contents_version(self) -> int:
        """Bumps whenever `contents` changes (inventories, or the order of appliances)."""
        return self._contents_gen

    def snapshot_json(self, wall_time: float, contents_version: int | None = None) -> bytes:
        """The snapshot as JSON bytes, encoded once per version.

        When *contents_version* is the current one, the caller already holds these contents:
        they are left out (`"contents_unchanged": true`), so a state or load change costs a
        steering replica a few kilobytes, not a million content ids.
        """
        _, full, head_only = self._encode(wall_time)
        return head_only if contents_version == self._contents_gen else full

    def _encode(self, wall_time: float) -> tuple[dict[str, Any], bytes, bytes]:
        return self._encoder.encode(
            self._version, self._contents_gen, wall_time, self._topology, self._apps.values()
        )

    # -- for the views (control.views) ---------------------------------------------------

    @property
    def records(self) -> Mapping[str, ApplianceRecord]:
        """Every appliance's record, in topology order (read them, do not modify)."""
        return MappingProxyType(self._apps)

    def region_of(self, name: str) -> str:
        """The region of the site of appliance *name* (where its clients are)."""
        site = self._topology.site(self._get(name).spec.site)
        return site.region if site is not None else ""

    # -- internals -----------------------------------------------------------------------

    def _get(self, name: str) -> ApplianceRecord:
        rec = self._apps.get(name)
        if rec is None:
            raise UnknownAppliance(name)
        return rec

    def _install(self, topology: Topology, drains: set[str]) -> None:
        old = self._apps
        self._apps = {}
        for spec in topology.appliances:
            rec = old.get(spec.name) or ApplianceRecord(spec)
            rec.spec = spec
            rec.admin_drain = rec.admin_drain or spec.name in drains
            self._apps[spec.name] = rec
        self._topology = topology

    @staticmethod
    def _normalise(prefixes: tuple[str, ...]) -> tuple[str, ...]:
        nets = {str(ipaddress.ip_network(p, strict=False)) for p in prefixes}
        return tuple(sorted(nets, key=prefix_key))

    @staticmethod
    def _apply_inventory(rec: ApplianceRecord, inv: InventoryUpdate | None) -> tuple[bool, bool]:
        """(accepted, contents changed). A delta needs `base` == the version we hold."""
        if inv is None:
            return True, False
        if inv.full is not None:
            new = set(inv.full)
            changed = new != rec.inventory
            rec.inventory, rec.inventory_version, rec.inventory_known = new, inv.version, True
            rec.inventory_epoch = inv.epoch
            return True, changed
        if (
            not rec.inventory_known
            or inv.epoch != rec.inventory_epoch
            or inv.base != rec.inventory_version
        ):
            # Keep what we hold (still a true past view) until the full list arrives.
            return False, False
        changed = False
        # Removals first: an id in both lists was removed and re-added, so it is present.
        for cid in inv.removed:
            if cid in rec.inventory:
                rec.inventory.discard(cid)
                changed = True
        for cid in inv.added:
            if cid not in rec.inventory:
                rec.inventory.add(cid)
                changed = True
        rec.inventory_version = inv.version
        return True, changed

    def _visible(self, rec: ApplianceRecord) -> tuple[ApplianceState, float]:
        """What the snapshot shows of one appliance."""
        return rec.state(self._topology.fleet.saturation_threshold), load_bucket(rec.load())

    def _changed(
        self,
        before: tuple[ApplianceState, float],
        rec: ApplianceRecord,
        *,
        contents: bool = False,
        other: bool = False,
    ) -> None:
        if contents:
            self._contents_gen += 1
        if contents or other or self._visible(rec) != before:
            self._version += 1

    def _site_prefixes(self, site: str) -> tuple[str, ...]:
        spec = next((s for s in self._topology.sites if s.name == site), None)
        merged = set(spec.prefixes if spec else ())
        for rec in self._apps.values():
            if rec.spec.site == site:
                merged.update(rec.prefixes)
        return tuple(sorted(merged, key=prefix_key))
