"""The running control service: what every handler shares, and its background work.

`Control` holds the registry (pure, control.registry), the store and its one thread, the
role tokens, the popularity counts heartbeats carry (`control.popularity`, written every
`popularity_flush_s`), the manifest heads that answer conditional GETs without SQLite, and
the tasks that mark silent appliances down and reload the topology (SIGHUP, wired by
`control.cli`). The routes live in control.fleet_routes and control.fill_routes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from aiohttp import web

from control.auth import AuthResult, RoleTokens, appliance_role
from control.config import ControlConfig
from control.errors import ApiError, unknown_appliance
from control.metrics import ControlMetrics
from control.popularity import PopularityBuffer, utc_day
from control.registry import Registry
from control.store import Store
from control.topology import Topology, TopologyError, load_topology
from edgefleet.fleet import bearer

log = logging.getLogger("edgefleet.control")

T = TypeVar("T")


class Control:
    """The running service: what every handler shares."""

    def __init__(
        self,
        config: ControlConfig,
        topology: Topology,
        secret: bytes,
        store: Store,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.wall_clock = wall_clock
        # Versions start at the start time in µs: a restarted control never reuses the
        # version (ETag) of different content that a steering replica still holds.
        self.registry = Registry(
            topology, drains=store.drains(), first_version=int(wall_clock() * 1e6)
        )
        self.tokens = RoleTokens(secret, topology.appliance_names())
        self.started = clock()
        self.metrics = ControlMetrics()
        self._store_thread = ThreadPoolExecutor(1, thread_name_prefix="control-store")
        # Counts from heartbeats, written to the store by flush_popularity.
        self.popularity = PopularityBuffer()
        # Per appliance: (generation, source names) of its newest manifest, or None for none;
        # filled on first request and on each publication (only this process writes the store),
        # so a conditional GET answers 304 without touching SQLite.
        self.manifest_heads: dict[str, tuple[int, frozenset[str]] | None] = {}
        self.newest_generation = store.newest_generation() or 0
        self.metrics.manifest_generation.set(self.newest_generation)

    async def in_store_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking store (or file) call off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._store_thread, fn, *args)

    def warming_up(self) -> bool:
        """Just (re)started and still relearning the fleet from heartbeats.

        Control's state is soft: for up to `down_after_missed` heartbeat intervals after a
        start it does not know yet what every appliance holds, and a snapshot would tell
        steering that files are nowhere. Until every appliance has reported (or that time
        has passed: the silent ones are down anyway) it answers 503 for the snapshot, and
        steering keeps serving from the last good one it has.
        """
        fleet = self.registry.topology.fleet
        warmup_s = fleet.heartbeat_interval_s * fleet.down_after_missed
        return self.clock() - self.started < warmup_s and not self.registry.relearned()

    def close(self) -> None:
        """Stop the store thread (the owner closes the store itself)."""
        self._store_thread.shutdown(wait=True)

    def count_served(self, name: str, served: dict[str, int]) -> None:
        """Add a heartbeat's `served` counts under today's UTC date and the appliance's region."""
        day = utc_day(self.wall_clock())
        added = self.popularity.add(day, self.registry.region_of(name), served)
        self.metrics.popularity_bytes.inc(added)
        self.metrics.popularity_pending.set(len(self.popularity))

    async def flush_popularity(self) -> bool:
        """Write the buffered popularity counts to the store; on failure keep them for later."""
        taken = self.popularity.take()
        if not taken:
            return True
        try:
            await self.in_store_thread(self.store.add_popularity, taken)
        except Exception as exc:  # a full disk must not lose counts: retried next flush
            self.popularity.put_back(taken)
            self.metrics.popularity_flushes.labels("error").inc()
            log.error("popularity counts NOT written (%d keys kept for retry): %s", len(taken), exc)
            return False
        finally:
            self.metrics.popularity_pending.set(len(self.popularity))
        self.metrics.popularity_flushes.labels("ok").inc()
        return True

    async def flush_popularity_forever(self) -> None:
        """Write the popularity counts every `popularity_flush_s`."""
        while True:
            await asyncio.sleep(self.config.popularity_flush_s)
            await self.flush_popularity()

    def authorize(self, request: web.Request, *roles: str) -> None:
        """Raise 401/403 unless the request carries the token of one of *roles*."""
        result = self.tokens.check(bearer(request.headers), roles)
        if result is not AuthResult.OK:
            headers = {"WWW-Authenticate": 'Bearer realm="edgefleet"'}
            raise ApiError(result.status, result.value, headers=headers)

    def appliance_name(self, request: web.Request, *roles: str, itself: bool = True) -> str:
        """The {name} of the path, after checking the caller holds the token of one of *roles*
        or (when *itself*) of that appliance; 404 if the topology has no such appliance."""
        name = request.match_info["name"]
        self.authorize(request, *((appliance_role(name),) if itself else ()), *roles)
        if self.registry.topology.appliance(name) is None:
            raise unknown_appliance(name)
        return name

    def manifests_stored(
        self, generation: int, heads: Mapping[str, frozenset[str]], stored: int
    ) -> None:
        """The store took (or already held) manifests of *generation*: appliance → the
        sources it names. Keeps `manifest_heads` and the publication metrics current."""
        for name, sources in heads.items():
            head = self.manifest_heads.get(name)
            # Two publications may finish out of order here; the store took only the newer one.
            if head is None or head[0] < generation:
                self.manifest_heads[name] = (generation, sources)
        # A retried manifest the store already held (stored == 0) was counted the first time.
        self.newest_generation = max(self.newest_generation, generation)
        self.metrics.manifest_generation.set(self.newest_generation)
        self.metrics.manifests_published.inc(stored)

    async def reload(self) -> bool:
        """Reload the topology file; keep the one in force when the new one is invalid."""
        try:
            topology = await self.in_store_thread(load_topology, self.config.topology)
        except TopologyError as exc:
            self.metrics.reloads.labels("error").inc()
            log.error("topology NOT reloaded, keeping the current one: %s", exc)
            return False
        drains = await self.in_store_thread(self.store.drains)
        changed = self.registry.set_topology(topology, drains=drains)
        self.tokens.set_appliances(topology.appliance_names())
        self.metrics.reloads.labels("ok").inc()
        log.info("topology reloaded: %s%s", topology.summary(), "" if changed else " (no change)")
        return True

    def tick_period_s(self) -> float:
        """How often to look for silent appliances."""
        interval = self.registry.topology.fleet.heartbeat_interval_s
        return min(self.config.tick_interval_s, interval / 4)

    async def tick_forever(self) -> None:
        """Mark down appliances that stopped heartbeating: at the tick period, and also right
        when the next silent one passes its limit, so the chaos drill's bound (3 heartbeats
        + 1 snapshot from the fault) does not also absorb up to a tick period of lateness."""
        while True:
            wait = self.tick_period_s()
            due = self.registry.next_down_at()
            if due is not None:
                # tick() marks down strictly after the limit: wake just past it.
                wait = min(wait, max(due - self.clock(), 0.0) + 0.002)
            await asyncio.sleep(wait)
            for name in self.registry.tick(self.clock()):
                self.metrics.marked_down.inc()
                log.warning(
                    "appliance %s is down: no heartbeat for %.1f s",
                    name,
                    self.registry.topology.fleet.down_after_s,
                )


CONTROL = web.AppKey("control", Control)
