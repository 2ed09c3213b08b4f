"""The drill's asyncio shell: viewers playing in-process, two pollers asking steering where it
would send a player, and the scheduled faults injected, held and repaired on the fleet."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import signal
import time
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp

from bench.chaos.fleet import SITE_CLIENTS, ChaosFleet, signal_service, start_service, stop_service
from bench.chaos.schedule import OUT_KINDS, Fault
from bench.chaos.watch import SteeringWatch, answer_appliances
from bench.player import Done, Fetch, Player, PlayerConfig, SessionReport, Steer
from bench.timeline import PlayerLog

DELAY_MS: Final = 300
POLL_S: Final = 0.1
DISK_FAULT_ENV: Final = "EDGEFLEET_CHAOS_DISK_FAULT"


@dataclass
class Drill:
    """One drill's live state (the asyncio shell)."""

    fleet: ChaosFleet
    faults: list[Fault]
    users: int
    duration_s: float
    player: PlayerConfig
    request_timeout_s: float
    disk_fault: bool
    seed: int
    watch: SteeringWatch = field(default_factory=SteeringWatch)
    log: PlayerLog = field(default_factory=PlayerLog)
    reports: list[SessionReport] = field(default_factory=list)
    wrong_bytes: int = 0
    wrong_detail: list[str] = field(default_factory=list)
    steer_failovers: int = 0
    poll_errors: dict[str, int] = field(default_factory=dict)
    fault_rows: list[dict[str, Any]] = field(default_factory=list)
    start: float = 0.0

    @property
    def deadline(self) -> float:
        """When the load stops (monotonic)."""
        return self.start + self.duration_s

    def steering_urls(self) -> list[str]:
        """The replicas' base URLs (ports survive restarts)."""
        return [self.fleet.services[n].url for n in self.fleet.steering]

    # -- viewers -----------------------------------------------------------------------

    async def viewer(self, number: int, http: dict[str, aiohttp.ClientSession]) -> None:
        """One viewer after another on seat *number*, until the load stops."""
        rng = random.Random(self.seed * 1000 + number)
        site = list(SITE_CLIENTS)[number % len(SITE_CLIENTS)]
        titles = sorted(self.fleet.sources)
        sessions = 0
        await asyncio.sleep(rng.uniform(0, 3))  # viewers do not all press play at once
        while time.monotonic() < self.deadline - 1.0:
            title = rng.choice(titles)
            # Alternate the first replica tried, so that both carry players.
            first = (number + sessions) % 2
            await self.session(http[site], SITE_CLIENTS[site], title, first)
            sessions += 1
            await asyncio.sleep(rng.uniform(0.2, 1.0))  # choosing the next title

    async def session(
        self, http: aiohttp.ClientSession, client_ip: str, title: str, first: int
    ) -> None:
        """One playback session, start to end (or to the end of the load)."""
        urls = self.steering_urls()
        replicas = urls[first:] + urls[:first]
        player = Player(self.player, (title,), time.monotonic(), steering_endpoints=len(urls))
        while True:
            now = time.monotonic()
            if now >= self.deadline:
                report = player.stop(now)
                break
            action = player.next_action(now)
            if isinstance(action, Done):
                report = action.report
                break
            if isinstance(action, Steer):
                await self.steer(http, player, action, replicas[action.endpoint], client_ip)
            elif isinstance(action, Fetch):
                await self.fetch(http, player, action)
            else:
                await asyncio.sleep(min(action.seconds, max(0.0, self.deadline - now)))
            self.record_events(player)
        self.record_events(player)
        self.reports.append(report)
        self.log.sessions.append((time.monotonic(), report))

    def record_events(self, player: Player) -> None:
        """The player's events into the timeline log."""
        for e in player.drain_events():
            if e.kind == "rebuffer":
                self.log.rebuffers.append((e.at, e.seconds))
            elif e.kind == "failover":
                self.log.failovers.append((e.at, e.detail))

    async def steer(
        self,
        http: aiohttp.ClientSession,
        player: Player,
        action: Steer,
        url: str,
        client_ip: str,
    ) -> None:
        """POST /v1/steer for the player; a failure moves it to the next replica."""
        body = {
            "client_ip": client_ip,
            "content_ids": list(action.content_ids),
            "max_urls": action.max_urls,
        }
        try:
            async with http.post(f"{url}/v1/steer", json=body) as resp:
                answer = await resp.json() if resp.status == 200 else None
                reason = None if resp.status == 200 else f"status {resp.status}"
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            answer, reason = None, f"{type(exc).__name__}: {exc}"
        now = time.monotonic()
        if reason is None and isinstance(answer, dict):
            self.watch.observe(now, answer_appliances(answer))
            player.steered(now, answer)
        else:
            self.steer_failovers += 1
            player.steer_failed(now, reason or "answer is not a JSON object")

    async def fetch(self, http: aiohttp.ClientSession, player: Player, fetch: Fetch) -> None:
        """GET one segment, compare it with the source bytes, tell the player."""
        try:
            async with http.get(fetch.url, headers={"Range": fetch.range_header}) as resp:
                body = await resp.read()
                status, content_range = resp.status, resp.headers.get("Content-Range")
        except (aiohttp.ClientError, TimeoutError) as exc:
            player.fetch_failed(time.monotonic(), fetch, f"{type(exc).__name__}: {exc}")
            return
        now = time.monotonic()
        if status == 206:
            source = self.fleet.sources[fetch.content_id]
            if body != source[fetch.start : fetch.start + len(body)]:
                self.wrong_bytes += 1
                if len(self.wrong_detail) < 10:
                    self.wrong_detail.append(
                        f"{fetch.appliance} {fetch.content_id} {fetch.range_header}"
                    )
                player.fetch_failed(now, fetch, "bytes differ from the origin's")
                return
        if player.segment_received(now, fetch, status, content_range, len(body)) is None:
            self.log.segments.append((now, len(body)))

    # -- the steering watch --------------------------------------------------------------

    async def poll(self, http: dict[str, aiohttp.ClientSession]) -> None:
        """Ask both replicas, from a client in each site, every POLL_S until the load stops."""
        ids = sorted(self.fleet.sources)[:2]
        timeout = aiohttp.ClientTimeout(total=1.0)

        async def ask(name: str, url: str, site: str) -> None:
            body = {"client_ip": SITE_CLIENTS[site], "content_ids": ids, "max_urls": 3}
            try:
                async with http[site].post(f"{url}/v1/steer", json=body, timeout=timeout) as r:
                    answer = await r.json() if r.status == 200 else None
            except (aiohttp.ClientError, TimeoutError, ValueError):
                answer = None
            if answer is None:
                self.poll_errors[name] = self.poll_errors.get(name, 0) + 1
            else:
                self.watch.observe(time.monotonic(), answer_appliances(answer))

        while time.monotonic() < self.deadline:
            tick = time.monotonic()
            await asyncio.gather(
                *(
                    ask(name, self.fleet.services[name].url, site)
                    for name in self.fleet.steering
                    for site in SITE_CLIENTS
                )
            )
            await asyncio.sleep(max(0.0, POLL_S - (time.monotonic() - tick)))

    # -- faults --------------------------------------------------------------------------

    async def inject_all(self) -> None:
        """Every scheduled fault in turn, at its time."""
        for fault in self.faults:
            await asyncio.sleep(max(0.0, self.start + fault.at_s - time.monotonic()))
            await self.inject(fault)

    async def inject(self, fault: Fault) -> None:
        """Break, hold, repair; one report row."""
        fleet, target = self.fleet, fault.target
        row: dict[str, Any] = {"kind": fault.kind, "target": target, "hold_s": fault.hold_s}
        row["note"] = ""
        if fault.kind == "disk-fail" and not self.disk_fault:
            row.update(
                start_s=None,
                note=f"skipped (--no-disk-fault or {DISK_FAULT_ENV}=0)",
            )
            row["out_of_steering_s"] = None
            self.fault_rows.append(row)
            return
        began = time.monotonic()
        steer_failovers = self.steer_failovers
        poll_errors = self.poll_errors.get(target, 0)
        exit_ = self.watch.open(fault, began) if fault.kind in OUT_KINDS else None
        service = fleet.services.get(target)
        runtime = fleet.runtime_dir(target) if target in fleet.site_of else None
        if fault.kind in ("edge-kill", "steering-kill"):
            assert service is not None
            signal_service(service, signal.SIGKILL)
            await asyncio.to_thread(stop_service, service, signal.SIGKILL)  # reap it
        elif fault.kind == "edge-stop":
            assert service is not None
            signal_service(service, signal.SIGSTOP)
        elif fault.kind == "control-restart":
            assert service is not None
            await asyncio.to_thread(stop_service, service)
        elif fault.kind == "edge-drain":
            await asyncio.to_thread(fleet.drain, target)
        elif fault.kind == "edge-delay":
            assert runtime is not None
            (runtime / "fault-delay-ms").write_text(f"{DELAY_MS}\n")
            row["note"] = f"{DELAY_MS} ms on every answer"
        elif fault.kind == "disk-fail":
            assert runtime is not None
            (runtime / "fault-disks").write_text(f"{fleet.root / target / 'disk0'}\n")
        row["start_s"] = round(began - self.start, 3)
        await asyncio.sleep(max(0.0, began + fault.hold_s - time.monotonic()))
        if exit_ is not None:
            self.watch.close(exit_, time.monotonic())
        try:
            await self.repair(fault, row)
        except (RuntimeError, OSError) as exc:
            row["note"] = f"repair failed: {exc}"
        row["end_s"] = round(time.monotonic() - self.start, 3)
        if fault.kind == "steering-kill":
            moved = self.steer_failovers - steer_failovers
            unanswered = self.poll_errors.get(target, 0) - poll_errors
            row["note"] = (
                f"{unanswered} watch polls unanswered; {moved} player steering calls failed "
                "over to the other replica"
            )
        out = exit_.out_after_s(margin_s=3 * POLL_S) if exit_ is not None else None
        row["out_of_steering_s"] = None if out is None else round(out, 3)
        row["answers_seen"] = exit_.answers if exit_ is not None else None
        self.fault_rows.append(row)

    async def repair(self, fault: Fault, row: dict[str, Any]) -> None:
        """Undo *fault* (restart, continue, undrain, switch off)."""
        fleet, target = self.fleet, fault.target
        if fault.kind in ("edge-kill", "steering-kill"):
            await asyncio.to_thread(start_service, fleet.services[target])
        elif fault.kind == "edge-stop":
            signal_service(fleet.services[target], signal.SIGCONT)
        elif fault.kind == "control-restart":
            await asyncio.to_thread(start_service, fleet.services[target])
            back = time.monotonic()
            took = await asyncio.to_thread(self.fleet_relearned, 15.0)
            row["note"] = (
                "control did not relearn the fleet within 15 s"
                if took is None
                else f"fleet relearned {took - back:.2f} s after control restarted"
            )
        elif fault.kind == "edge-drain":
            await asyncio.to_thread(fleet.drain, target, True)
        elif fault.kind == "edge-delay":
            (fleet.runtime_dir(target) / "fault-delay-ms").unlink(missing_ok=True)
        elif fault.kind == "disk-fail":
            (fleet.runtime_dir(target) / "fault-disks").unlink(missing_ok=True)

    def fleet_relearned(self, timeout_s: float) -> float | None:
        """Poll control until every appliance is up again: the time it was (None: never)."""
        import urllib.request  # blocking: runs in a worker thread

        deadline = time.monotonic() + timeout_s
        req = urllib.request.Request(
            f"{self.fleet.services['control'].url}/v1/appliances",
            headers={"Authorization": f"Bearer {self.fleet.admin_token()}"},
        )
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError, KeyError):
                with urllib.request.urlopen(req, timeout=2) as resp:
                    view = json.load(resp)["appliances"]
                if all(a["state"] == "up" for a in view):
                    return time.monotonic()
            time.sleep(0.1)
        return None

    # -- the run -------------------------------------------------------------------------

    async def run(self) -> None:
        """Load, watch and faults together until the deadline."""
        timeout = aiohttp.ClientTimeout(total=self.request_timeout_s)
        http: dict[str, aiohttp.ClientSession] = {}
        try:
            for site, ip in SITE_CLIENTS.items():
                # Each site's players connect from their own address: the signed URL is bound
                # to it, and steering places them by it.
                connector = aiohttp.TCPConnector(limit=0, local_addr=(ip, 0))
                http[site] = aiohttp.ClientSession(connector=connector, timeout=timeout)
            await self.wait_ready(http)
            self.start = time.monotonic()
            self.watch.never = frozenset(
                n for n, site in self.fleet.site_of.items() if site == "origin"
            )
            async with asyncio.TaskGroup() as tg:
                for i in range(self.users):
                    tg.create_task(self.viewer(i, http), name=f"viewer-{i}")
                tg.create_task(self.poll(http), name="steering-watch")
                tg.create_task(self.inject_all(), name="faults")
        finally:
            for session in http.values():
                await session.close()

    async def wait_ready(
        self, http: dict[str, aiohttp.ClientSession], timeout_s: float = 30
    ) -> None:
        """Until both replicas list every edge for a client of each site (all reported in)."""
        deadline = time.monotonic() + timeout_s
        ids = sorted(self.fleet.sources)
        want = set(self.fleet.edges)
        seen: set[str] = set()
        while time.monotonic() < deadline:
            seen = set()
            for name in self.fleet.steering:
                for site, ip in SITE_CLIENTS.items():
                    body = {"client_ip": ip, "content_ids": ids, "max_urls": 20}
                    with contextlib.suppress(aiohttp.ClientError, TimeoutError, ValueError):
                        async with http[site].post(
                            f"{self.fleet.services[name].url}/v1/steer", json=body
                        ) as resp:
                            if resp.status == 200:
                                seen |= answer_appliances(await resp.json())
            if want <= seen:
                return
            await asyncio.sleep(0.3)
        raise RuntimeError(
            f"the fleet was not ready in {timeout_s:.0f} s: steering lists {sorted(seen)}"
        )
