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
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from control.topology import ApplianceSpec, Topology
from edgefleet.fleet import ApplianceState
from edgefleet.heartbeat import (
    MAX_REGISTER_CHARS,
    Health,
    Heartbeat,
    HeartbeatReply,
    InventoryUpdate,
    RegisterReply,
    Registration,
    ReportedState,
    is_http_url,
)

# Loads are published rounded to this step: heartbeat noise must not bump the version.
LOAD_STEP = 0.05


class UnknownAppliance(KeyError):
    """The name is not an appliance of the topology."""


@dataclass(slots=True)
class _Appliance:
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


def _prefix_key(text: str) -> tuple[int, int, int]:
    net = ipaddress.ip_network(text)
    return (net.version, int(net.network_address), net.prefixlen)


class Registry:
    """Every appliance's state, and the snapshot built from them."""

    def __init__(
        self, topology: Topology, *, drains: Iterable[str] = (), first_version: int = 1
    ) -> None:
        self._topology = topology
        self._apps: dict[str, _Appliance] = {}
        # Bumps whenever the snapshot changes; _contents_gen when `contents` changes.
        self._version = first_version
        # Like the version, it starts at the start time: a restarted control never reuses a
        # contents version that a steering replica holds for other contents.
        self._contents_gen = first_version
        self._contents_cache: tuple[int, dict[str, list[int]], bytes] | None = None
        self._snapshot_cache: tuple[int, dict[str, Any], bytes, bytes] | None = None
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

    def _deadlines(self) -> Iterator[tuple[str, _Appliance, float]]:
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
        head_before = self._head()
        names_before = list(self._apps)
        self._install(topology, set(drains))
        if list(self._apps) != names_before:  # indexes in `contents` moved
            self._contents_gen += 1
        if self._head() == head_before:
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
            contents = self._build_contents()
            return {
                "version": self._version,
                "generated_at": wall_time,
                "contents_version": self._contents_gen,
                **self._head(),
                "contents": contents,
            }
        return self._snapshot(wall_time)[0]

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
        _, full, head_only = self._snapshot(wall_time)
        return head_only if contents_version == self._contents_gen else full

    def appliances_view(self, now: float) -> list[dict[str, Any]]:
        """What operators see in GET /v1/appliances."""
        threshold = self._topology.fleet.saturation_threshold
        out = []
        for rec in self._apps.values():
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

    # -- the fill's views ----------------------------------------------------------------

    def region_of(self, name: str) -> str:
        """The region of the site of appliance *name* (where its clients are)."""
        site = self._topology.site(self._get(name).spec.site)
        return site.region if site is not None else ""

    def sources(self, names: Iterable[str]) -> tuple[dict[str, str], dict[str, str]]:
        """(base URL, state) of each named appliance as control sees it now.

        Names the topology no longer has are reported `down` with no URL: the agent skips them.
        """
        threshold = self._topology.fleet.saturation_threshold
        urls: dict[str, str] = {}
        states: dict[str, str] = {}
        for name in sorted(set(names)):
            rec = self._apps.get(name)
            if rec is None:
                states[name] = ApplianceState.DOWN.value
                continue
            if rec.base_url:
                urls[name] = rec.base_url
            states[name] = rec.state(threshold).value
        return urls, states

    def fleet_view(self) -> dict[str, Any]:
        """What the fill planner needs (GET /v1/fleet, docs/fleet-api.md).

        `capacity_bytes` is the topology's when set, else the total of the non-failed disks
        the appliance last reported (0 before its first heartbeat); `free_bytes` always comes
        from the heartbeats.
        """
        threshold = self._topology.fleet.saturation_threshold
        appliances = []
        inventories: dict[str, list[str]] = {}
        for rec in self._apps.values():
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
            "regions": [r.name for r in self._topology.regions],
            "sites": [
                {"name": s.name, "region": s.region, "role": s.role, "costs": dict(s.costs)}
                for s in self._topology.sites
            ],
            "appliances": appliances,
            "inventories": inventories,
        }

    # -- internals -----------------------------------------------------------------------

    def _get(self, name: str) -> _Appliance:
        rec = self._apps.get(name)
        if rec is None:
            raise UnknownAppliance(name)
        return rec

    def _install(self, topology: Topology, drains: set[str]) -> None:
        old = self._apps
        self._apps = {}
        for spec in topology.appliances:
            rec = old.get(spec.name) or _Appliance(spec)
            rec.spec = spec
            rec.admin_drain = rec.admin_drain or spec.name in drains
            self._apps[spec.name] = rec
        self._topology = topology

    @staticmethod
    def _normalise(prefixes: tuple[str, ...]) -> tuple[str, ...]:
        nets = {str(ipaddress.ip_network(p, strict=False)) for p in prefixes}
        return tuple(sorted(nets, key=_prefix_key))

    @staticmethod
    def _apply_inventory(rec: _Appliance, inv: InventoryUpdate | None) -> tuple[bool, bool]:
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

    def _visible(self, rec: _Appliance) -> tuple[ApplianceState, float]:
        """What the snapshot shows of one appliance."""
        return rec.state(self._topology.fleet.saturation_threshold), load_bucket(rec.load())

    def _changed(
        self,
        before: tuple[ApplianceState, float],
        rec: _Appliance,
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
        return tuple(sorted(merged, key=_prefix_key))

    def _head(self) -> dict[str, Any]:
        """The snapshot without version, time and contents."""
        threshold = self._topology.fleet.saturation_threshold
        learned: dict[str, set[str]] = {}
        for rec in self._apps.values():
            learned.setdefault(rec.spec.site, set()).update(rec.prefixes)
        sites = [
            {
                "name": s.name,
                "region": s.region,
                "lat": s.lat,
                "lon": s.lon,
                "prefixes": sorted(set(s.prefixes) | learned.get(s.name, set()), key=_prefix_key),
                "costs": dict(s.costs),
                "role": s.role,
            }
            for s in self._topology.sites
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
            for rec in self._apps.values()
        ]
        return {
            "heartbeat_interval_s": self._topology.fleet.heartbeat_interval_s,
            "sites": sites,
            "appliances": appliances,
        }

    def _contents(self) -> tuple[dict[str, list[int]], bytes]:
        cached = self._contents_cache
        if cached is not None and cached[0] == self._contents_gen:
            return cached[1], cached[2]
        contents = self._build_contents()
        encoded = json.dumps(contents, separators=(",", ":")).encode()
        self._contents_cache = (self._contents_gen, contents, encoded)
        return contents, encoded

    def _build_contents(self) -> dict[str, list[int]]:
        contents: dict[str, list[int]] = {}
        for index, rec in enumerate(self._apps.values()):
            for cid in rec.inventory:
                # Appliances are visited in index order, so every list comes out sorted.
                contents.setdefault(cid, []).append(index)
        return contents

    def _snapshot(self, wall_time: float) -> tuple[dict[str, Any], bytes, bytes]:
        cached = self._snapshot_cache
        if cached is not None and cached[0] == self._version:
            return cached[1], cached[2], cached[3]
        head = {
            "version": self._version,
            "generated_at": wall_time,
            "contents_version": self._contents_gen,
            **self._head(),
        }
        contents, contents_json = self._contents()
        # Splice the cached contents encoding in: a million ids are not re-encoded when
        # only a state or a load changed.
        encoded = json.dumps(head, separators=(",", ":")).encode()
        body = encoded[:-1] + b',"contents":' + contents_json + b"}"
        head_only = encoded[:-1] + b',"contents_unchanged":true}'
        doc = {**head, "contents": contents}
        self._snapshot_cache = (self._version, doc, body, head_only)
        return doc, body, head_only
