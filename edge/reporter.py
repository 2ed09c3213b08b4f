"""The appliance side of the control plane: register, then heartbeat health and inventory.

Runs as its own process next to the workers (the supervisor restarts it if it dies). Every
`heartbeat_interval_s` (control says how often) it posts what docs/fleet-api.md calls a
heartbeat: health from psutil and the edge's own counters, the prefixes this appliance serves,
its inventory as a delta since the version control holds — read from the index's change
log — or the whole list when control asks for a resync, and the bytes served per content id
that the workers spooled since the last acknowledged heartbeat (edge.popularity). When
control is unreachable the edge keeps serving what it has; the reporter retries every interval
and logs once a minute. On SIGTERM it sends a last heartbeat saying "draining", so steering
stops sending new clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from edge.config import EdgeConfig
from edge.disks import DiskError, open_disk
from edge.index import ContentIndex
from edge.popularity import Spool, spool_dir
from edge.runtime import keeper_file, read_json, read_worker_snapshots
from edgefleet import __version__
from edgefleet.errors import parse_error_body
from edgefleet.fleet import load_secret, role_token
from edgefleet.heartbeat import (
    DiskHealth,
    Health,
    Heartbeat,
    HeartbeatReply,
    InventoryUpdate,
    RegisterReply,
    Registration,
    ReportedState,
)

log = logging.getLogger("edgefleet.edge.reporter")
LOG_EVERY_S = 60.0


class InventoryTracker:
    """What control holds of this appliance's inventory, and what to send it next."""

    def __init__(self, index: ContentIndex) -> None:
        self.index = index
        self.epoch = index.index_id()
        self.held: int | None = None  # None: control needs the full list

    def next_update(self) -> InventoryUpdate:
        """The inventory part of the next heartbeat (a delta when possible)."""
        if self.held is not None:
            delta = self.index.changes_since(self.held)
            if delta is not None:
                version, ops = delta
                last: dict[str, str] = {}
                for op, cid in ops:
                    last[cid] = op  # the final operation on an id decides
                return InventoryUpdate(
                    epoch=self.epoch,
                    base=self.held,
                    version=version,
                    added=tuple(sorted(c for c, op in last.items() if op == "+")),
                    removed=tuple(sorted(c for c, op in last.items() if op == "-")),
                )
        # The generation is read before the listing: changes made in between are sent again
        # in the next delta, which is harmless (adding a present id, removing an absent one).
        version = self.index.generation()
        ids = tuple(r.content_id for r in self.index.records())
        return InventoryUpdate(epoch=self.epoch, version=version, full=ids)

    def acknowledged(self, sent: InventoryUpdate, resync: bool) -> None:
        """Control answered a heartbeat that carried *sent*."""
        self.held = None if resync else sent.version


@dataclass
class HealthSampler:
    """Turns psutil readings into the health of a heartbeat."""

    config: EdgeConfig
    _last_bytes: int = -1
    _last_time: float = 0.0

    def __post_init__(self) -> None:
        psutil.cpu_percent(interval=None)  # the first reading is meaningless; start the clock

    def _nic_bytes(self) -> int:
        counters = psutil.net_io_counters(pernic=True)
        nic = self.config.control.nic
        if nic:
            return counters[nic].bytes_sent if nic in counters else 0
        return sum(c.bytes_sent for name, c in counters.items() if name != "lo")

    def _nic_capacity(self) -> float:
        if self.config.control.nic_capacity_bps:
            return self.config.control.nic_capacity_bps
        nic = self.config.control.nic
        if nic:
            try:
                speed_mbps = int(Path(f"/sys/class/net/{nic}/speed").read_text())
            except (OSError, ValueError):
                return 0.0
            return max(speed_mbps, 0) * 1e6
        return 0.0

    def sample(self) -> Health:
        """Health now."""
        now = time.monotonic()
        sent = self._nic_bytes()
        nic_bps = 0.0
        if self._last_bytes >= 0 and now > self._last_time:
            nic_bps = max(0, sent - self._last_bytes) * 8 / (now - self._last_time)
        self._last_bytes, self._last_time = sent, now
        keeper = read_json(keeper_file(self.config.runtime_dir)) or {}
        disks = disk_health(self.config.disks, keeper)
        scrub = keeper.get("scrub")
        quarantined = scrub.get("quarantined", 0) if isinstance(scrub, dict) else 0
        connections = sum(
            int(s.get("connections_open", 0))
            for s in read_worker_snapshots(self.config.runtime_dir)
        )
        return Health(
            cpu=psutil.cpu_percent(interval=None) / 100.0,
            load1=os.getloadavg()[0],
            memory=psutil.virtual_memory().percent / 100.0,
            connections=connections,
            nic_bps=nic_bps,
            nic_capacity_bps=self._nic_capacity(),
            disks=tuple(disks),
            quarantined=quarantined if isinstance(quarantined, int) else 0,
        )


def disk_health(roots: tuple[str, ...], keeper: dict[str, Any]) -> list[DiskHealth]:
    """Each disk as the heartbeat reports it: failed when its id file cannot be read now, or
    when the keeper's disk watch failed it (edge.diskwatch); a failed disk keeps the id the
    keeper last read from it, so control can tell which disk it was."""
    known: dict[str, dict[str, Any]] = {}
    for d in keeper.get("disks", []):
        if isinstance(d, dict) and isinstance(d.get("root"), str):
            known[d["root"]] = d
    out = []
    for root in roots:
        seen = known.get(root, {})
        last_id = str(seen.get("id", "") or "")
        try:
            disk = open_disk(root)
            free, total = disk.free_bytes(), disk.total_bytes()
        except (DiskError, OSError):
            out.append(DiskHealth(last_id, root, 0, 0, True))
            continue
        if seen.get("failed"):
            out.append(DiskHealth(disk.disk_id, root, 0, 0, True))
        else:
            out.append(DiskHealth(disk.disk_id, root, free, total, False))
    return out


class Reporter:
    """Registers with control and heartbeats until stopped."""

    def __init__(self, config: EdgeConfig, port: int) -> None:
        link = config.control
        self.config = config
        host = config.listen.host
        self.base_url = link.base_url or (f"http://{f'[{host}]' if ':' in host else host}:{port}")
        self.base = link.url.rstrip("/") + f"/v1/appliances/{link.appliance}"
        token = role_token(load_secret(link.secret_file), f"appliance:{link.appliance}")
        self.headers = {"Authorization": f"Bearer {token}"}
        self.index = ContentIndex(config.index, readonly=True)
        self.inventory = InventoryTracker(self.index)
        self.health = HealthSampler(config)
        self.spool = Spool(spool_dir(config.runtime_dir))
        self.interval_s = 2.0
        self.registered = False
        self.stopping = asyncio.Event()
        self._last_log = -LOG_EVERY_S
        self._failures = 0

    async def run(self) -> None:
        """Heartbeat until SIGTERM, then say "draining" once."""
        timeout = aiohttp.ClientTimeout(total=self.config.control.timeout_s)
        async with aiohttp.ClientSession(timeout=timeout, headers=self.headers) as session:
            while not self.stopping.is_set():
                if await self.beat(session, ReportedState.SERVING):
                    # Control asked for the full inventory: send it now, not an interval later,
                    # so a restarted control relearns the fleet within one interval.
                    await self.beat(session, ReportedState.SERVING)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), self.interval_s)
            await self.beat(session, ReportedState.DRAINING)
        self.index.close()

    async def beat(self, session: aiohttp.ClientSession, state: ReportedState) -> bool:
        """One register-if-needed + heartbeat round; True when control asked for a resync.
        Failures are logged, never raised."""
        try:
            if not self.registered:
                registration = Registration(
                    software=__version__,
                    base_url=self.base_url,
                    inventory_epoch=self.inventory.epoch,
                )
                async with session.post(
                    f"{self.base}/register", json=registration.to_json()
                ) as resp:
                    resp.raise_for_status()
                    registered = RegisterReply.from_json(await resp.json())
                self.interval_s = registered.heartbeat_interval_s
                held = registered.inventory_version
                # A restarted control holds nothing (0): it gets the full list.
                self.inventory.held = held if held > 0 else None
                self.registered = True
            inventory = self.inventory.next_update()
            served = self.spool.collect()
            hb = Heartbeat(
                state=state,
                health=self.health.sample(),
                prefixes=self.config.control.prefixes,
                inventory=inventory,
                base_url=self.base_url,
                served=served,
            )
            async with session.post(f"{self.base}/heartbeat", json=hb.to_json()) as resp:
                if resp.status == 404:
                    self.registered = False
                if resp.status == 422 and served:
                    await self._refused(resp)
                resp.raise_for_status()
                # A 200: control has the counts, so only now may their spool files go.
                self.spool.acknowledged()
                answer = HeartbeatReply.from_json(await resp.json())
            self.interval_s = answer.heartbeat_interval_s
            resync = answer.resync
            self.inventory.acknowledged(inventory, resync)
            if self._failures:
                log.info("control reachable again after %d failed heartbeats", self._failures)
                self._failures = 0
            return resync
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            self.spool.failed()  # the same counts go again next time
            self._failures += 1
            now = time.monotonic()
            if now - self._last_log >= LOG_EVERY_S:
                self._last_log = now
                log.warning("heartbeat to %s failed (%s); still serving", self.base, exc)
        return False

    async def _refused(self, resp: aiohttp.ClientResponse) -> None:
        """A 422 naming `served`: those counts would be refused forever; drop them, loudly."""
        try:
            refused = parse_error_body(await resp.read())
        except aiohttp.ClientError:
            return
        field = refused.field if refused is not None else None
        if field is not None and field.startswith("served"):
            dropped = self.spool.acknowledged()
            log.error(
                "control refused the served counts (%s): %d spool file(s) dropped", field, dropped
            )


def run_reporter(config: EdgeConfig, port: int, ready_fd: int) -> int:
    """Entry point of the forked reporter process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.write(ready_fd, b"R")
    os.close(ready_fd)

    async def main() -> None:
        reporter = Reporter(config, port)
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, reporter.stopping.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: None)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, (signal.SIGTERM, signal.SIGHUP))
        await reporter.run()

    asyncio.run(main())
    return 0
