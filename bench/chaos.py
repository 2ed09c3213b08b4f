"""The chaos drill: break a local fleet on purpose under playback load, report what viewers felt.

    python -m bench.chaos [--duration 180] [--seed N] [--users N] [--out DIR]    (make chaos)

It starts a fleet on 127.0.0.1 (bench/chaosfleet.py: control, two steering replicas, two edges
in each of two sites, an origin), runs `--users` viewers in-process (bench/player.py sessions
over aiohttp, each from a client address of its site, steering replicas tried in turn) and,
on a schedule drawn from `--seed`, injects faults one after another:

    edge-kill        SIGKILL an edge's process group; start it again after the hold
    edge-stop        SIGSTOP / SIGCONT an edge (a hung box)
    steering-kill    SIGKILL a steering replica; start it again
    control-restart  SIGTERM control, start it again on its port (it relearns from heartbeats)
    edge-drain       `edgefleet control drain`, then `--undo`
    edge-delay       every answer of an edge held back (its fault-delay-ms switch)
    disk-fail        an edge's disk fails (the edge's fault-disks hook: its files leave the index)

Every byte a player receives is compared with the source file (wrong bytes must be 0). Two
pollers ask both steering replicas every 100 ms, from a client in each site, where they would
send a player; for a fault that takes an appliance out (kill, stop, drain) the drill records
the last answer that still listed it: the time from the fault to the last client steered to
it, against the bound of 3 heartbeat intervals + 1 snapshot interval.

Results: a printed table and bench/results/chaos-<UTC>/ (report.md, report.json, timeline.png
with the faults marked, the services' logs). Exit status 0 when every target holds (0 sessions
failed, 0 wrong bytes, every dead appliance out of steering within the bound), 1 otherwise.

The schedule, the steering watch and the verdict are pure (tested without a fleet); the
asyncio shell below them only performs and times what they decide.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal, get_args

import aiohttp

from bench.chaosfleet import SITE_CLIENTS, ChaosFleet, signal_service, start_service, stop_service
from bench.player import (
    Done,
    Fetch,
    Player,
    PlayerConfig,
    SessionReport,
    Steer,
    Summary,
    percentile,
    summarise,
)
from bench.timeline import PlayerLog, timeline

FaultKind = Literal[
    "edge-kill",
    "edge-stop",
    "steering-kill",
    "control-restart",
    "edge-drain",
    "edge-delay",
    "disk-fail",
]
KINDS: Final[tuple[FaultKind, ...]] = get_args(FaultKind)
# Faults after which the appliance must leave steering: the drill measures how fast it does.
OUT_KINDS: Final = frozenset({"edge-kill", "edge-stop", "edge-drain"})
# How long each fault lasts. A fault that takes an appliance out must last well past the bound
# (3 heartbeats + 1 snapshot), or "it never left" and "it came back" could not be told apart.
HOLD_S: Final[dict[str, float]] = {
    "edge-kill": 8.0,
    "edge-stop": 6.0,
    "steering-kill": 4.0,
    "control-restart": 5.0,
    "edge-drain": 8.0,
    "edge-delay": 10.0,
    "disk-fail": 8.0,
}
DELAY_MS: Final = 300
POLL_S: Final = 0.1
RESULTS_DIR: Final = Path(__file__).resolve().parent / "results"
DISK_FAULT_ENV: Final = "EDGEFLEET_CHAOS_DISK_FAULT"

# -- the schedule (pure) ---------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """One planned fault: *kind* on *target* at *at_s* seconds after the load started."""

    at_s: float
    kind: FaultKind
    target: str
    hold_s: float


def make_schedule(
    seed: int,
    duration_s: float,
    edges: Sequence[str],
    steering: Sequence[str],
    kinds: Sequence[FaultKind] = KINDS,
    *,
    warmup_s: float = 8.0,
    settle_s: float = 6.0,
    hold_scale: float = 1.0,
) -> list[Fault]:
    """Faults one after another, in rounds of every kind in a seeded random order, until
    a round does not fit (no kind repeats before every other kind ran).

    A fault starts `settle_s` (plus jitter) after the previous one ended, so that a restarted
    service has reported in before the next one breaks: the drill measures each fault alone.
    The last fault ends at least `settle_s` before `duration_s`.
    """
    if not edges:
        raise ValueError("edges: the drill needs at least one edge")
    if not kinds:
        raise ValueError("kinds: no faults to schedule")
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise ValueError(f"kinds: unknown fault {unknown[0]!r} (known: {', '.join(KINDS)})")
    if "steering-kill" in kinds and not steering:
        raise ValueError("kinds: steering-kill needs a steering replica")
    rng = random.Random(seed)
    faults: list[Fault] = []
    at = warmup_s
    while True:
        order = list(dict.fromkeys(kinds))
        rng.shuffle(order)
        complete = True
        for kind in order:
            hold = HOLD_S[kind] * hold_scale
            if at + hold + settle_s > duration_s:
                complete = False
                continue  # a shorter fault may still fit
            pool = steering if kind == "steering-kill" else ("control",)
            target = rng.choice(list(edges if kind.startswith(("edge", "disk")) else pool))
            faults.append(Fault(at, kind, target, hold))
            at += hold + settle_s + rng.uniform(0, settle_s / 2)
        if not complete:  # no room for another round: kinds would repeat before others ran
            return faults


# -- time out of steering (pure) -------------------------------------------------------------


@dataclass
class Exit:
    """What the steering watch saw of one fault's target while the fault lasted."""

    fault: Fault
    started: float  # monotonic time the fault was injected
    ended: float | None = None  # when it was undone (the appliance may come back from then)
    last_seen: float | None = None  # the last answer, at or after `started`, that listed it
    answers: int = 0  # answers observed while the fault lasted

    def out_after_s(self, margin_s: float) -> float | None:
        """Seconds from the fault to the last client steered to the target; None when it was
        still listed within *margin_s* of the fault's end (it never left steering)."""
        if self.ended is None or self.answers == 0:
            return None
        if self.last_seen is None:
            return 0.0
        if self.ended - self.last_seen < margin_s:
            return None
        return self.last_seen - self.started


@dataclass
class SteeringWatch:
    """Every steering answer (pollers' and players') checked against the open faults."""

    exits: list[Exit] = field(default_factory=list)
    never: frozenset[str] = frozenset()  # appliances no player may be sent to (the origin)
    forbidden: int = 0  # answers that listed one of them

    def open(self, fault: Fault, now: float) -> Exit:
        """Watch *fault*'s target from *now*."""
        exit_ = Exit(fault, now)
        self.exits.append(exit_)
        return exit_

    def close(self, exit_: Exit, now: float) -> None:
        """The fault is undone: answers from now on no longer count."""
        exit_.ended = now

    def observe(self, now: float, appliances: Iterable[str]) -> None:
        """An answer received at *now* listed *appliances*."""
        listed = set(appliances)
        if listed & self.never:
            self.forbidden += 1
        for e in self.exits:
            if e.ended is None and now >= e.started:
                e.answers += 1
                if e.fault.target in listed:
                    e.last_seen = now


def answer_appliances(answer: Any) -> set[str]:
    """The appliances a steering answer lists, for any content id (empty for a bad answer)."""
    names: set[str] = set()
    try:
        for result in answer["results"]:
            names.update(str(u["appliance"]) for u in result["urls"])
    except (KeyError, TypeError):
        return set()
    return names


# -- the verdict (pure) ----------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One target of the drill."""

    name: str
    ok: bool
    detail: str


def verdict(
    summary: Summary,
    wrong_bytes: int,
    faults: Sequence[dict[str, Any]],
    bound_s: float,
    origin_answers: int = 0,
) -> list[Check]:
    """The drill's targets against what it measured (*faults*: the report's fault rows;
    *origin_answers*: steering answers that sent a player to the origin)."""
    checks = [
        Check("sessions failed = 0", summary.failed == 0, f"{summary.failed} failed"),
        Check("wrong-byte responses = 0", wrong_bytes == 0, f"{wrong_bytes} wrong"),
        Check("players never sent to the origin", origin_answers == 0, f"{origin_answers} answers"),
        Check(
            "sessions ran", summary.sessions > 0, f"{summary.sessions} started (a drill needs load)"
        ),
    ]
    for f in faults:
        if f["kind"] not in OUT_KINDS:
            continue
        out = f["out_of_steering_s"]
        ok = out is not None and out <= bound_s
        shown = "never left steering" if out is None else f"{out:.2f} s"
        checks.append(
            Check(f"{f['kind']} {f['target']} out of steering", ok, f"{shown} (≤ {bound_s:g} s)")
        )
    return checks


def session_hours(reports: Iterable[SessionReport]) -> float:
    """Hours of sessions (pressing play to the end): the denominator of rebuffer per hour."""
    return sum(r.duration_s for r in reports) / 3600


# -- the shell: players, pollers, faults ------------------------------------------------------


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


# -- the report ----------------------------------------------------------------------------


def report_doc(drill: Drill, bound_s: float, started_utc: str) -> dict[str, Any]:
    """report.json: options, player figures, faults and the verdict."""
    summary = summarise(drill.reports)
    hours = session_hours(drill.reports)
    checks = verdict(summary, drill.wrong_bytes, drill.fault_rows, bound_s, drill.watch.forbidden)
    for row in drill.fault_rows:
        row["bound_s"] = bound_s if row["kind"] in OUT_KINDS else None
    startups = [r.startup_s for r in drill.reports if r.startup_s is not None]
    return {
        "started_utc": started_utc,
        "seed": drill.seed,
        "users": drill.users,
        "duration_s": drill.duration_s,
        "heartbeat_interval_s": drill.fleet.heartbeat_s,
        "snapshot_interval_s": drill.fleet.snapshot_s,
        "bound_s": bound_s,
        "fleet": {
            "edges": {e: drill.fleet.site_of[e] for e in drill.fleet.edges},
            "steering_replicas": len(drill.fleet.steering),
        },
        "player": {
            "bitrate_bps": drill.player.bitrate_bps,
            "segment_bytes": drill.player.segment_bytes,
            "session_s": drill.player.session_s,
            "request_timeout_s": drill.request_timeout_s,
        },
        "sessions": summary.to_json(),
        "session_hours": hours,
        "rebuffer_s_per_session_hour": summary.rebuffer_s / hours if hours > 0 else 0.0,
        "startup_p99_s": percentile(startups, 99),
        "steering_failovers": drill.steer_failovers,
        "segment_failovers": summary.failovers,
        "wrong_bytes": drill.wrong_bytes,
        "wrong_examples": drill.wrong_detail,
        "steering_poll_errors": drill.poll_errors,
        "faults": drill.fault_rows,
        "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in checks],
        "pass": all(c.ok for c in checks),
    }


def _s(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f} s"


def report_text(doc: dict[str, Any]) -> str:
    """The printed table (also report.md)."""
    s = doc["sessions"]
    lines = [
        f"# Chaos drill {doc['started_utc']}: {'PASS' if doc['pass'] else 'FAIL'}",
        "",
        f"seed {doc['seed']}, {doc['users']} viewers for {doc['duration_s']:g} s; fleet: "
        f"{len(doc['fleet']['edges'])} edges in 2 sites + origin, "
        f"{doc['fleet']['steering_replicas']} steering replicas; heartbeat "
        f"{doc['heartbeat_interval_s']:g} s, snapshot {doc['snapshot_interval_s']:g} s "
        f"(out-of-steering bound {doc['bound_s']:g} s)",
        "",
        "| playback | |",
        "|---|---|",
        f"| sessions started | {s['sessions']} |",
        f"| sessions failed | {s['failed']} |",
        f"| sessions completed / cut at the end | {s['completed']} / {s['cut']} |",
        f"| rebuffer s per session-hour | {doc['rebuffer_s_per_session_hour']:.1f} "
        f"({s['rebuffers']} stalls, {s['rebuffer_s']:.2f} s) |",
        f"| startup p50 / p95 | {_s(s['startup_p50_s'])} / {_s(s['startup_p95_s'])} |",
        f"| failovers: segment / steering | {doc['segment_failovers']} / "
        f"{doc['steering_failovers']} |",
        f"| wrong-byte responses | {doc['wrong_bytes']} |",
        f"| MB received | {s['bytes'] / 1e6:.0f} |",
        "",
        "| fault | target | start | hold | out of steering | bound | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in doc["faults"]:
        start = "-" if f.get("start_s") is None else f"{f['start_s']:.1f} s"
        if f["kind"] in OUT_KINDS:
            out = f["out_of_steering_s"]
            shown = "never left" if out is None else f"{out:.2f} s"
            bound = f"{f['bound_s']:g} s"
        else:
            shown = bound = "-"
        lines.append(
            f"| {f['kind']} | {f['target']} | {start} | {f['hold_s']:g} s | {shown} | {bound} "
            f"| {f['note']} |"
        )
    lines += ["", "| target | result | measured |", "|---|---|---|"]
    lines += [
        f"| {c['name']} | {'ok' if c['ok'] else 'FAIL'} | {c['detail']} |" for c in doc["checks"]
    ]
    if s["errors"]:
        lines += ["", "Failed sessions by error:"]
        lines += [f"- {n} x {err}" for err, n in s["errors"].items()]
    if doc["wrong_examples"]:
        lines += ["", "Wrong bytes from:", *(f"- {w}" for w in doc["wrong_examples"])]
    return "\n".join(lines) + "\n"


def write_results(drill: Drill, doc: dict[str, Any], out: Path) -> None:
    """report.md, report.json, timeline.png and the services' logs into *out*."""
    from bench.plots import timeline_png  # matplotlib: only once there is something to draw

    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(doc, indent=2) + "\n")
    (out / "report.md").write_text(report_text(doc))
    tl = timeline(drill.log, drill.start, drill.duration_s)
    marks = [
        (f["start_s"], f"{f['kind']} {f['target']}")
        for f in doc["faults"]
        if f.get("start_s") is not None
    ]
    timeline_png(tl, out / "timeline.png", f"chaos drill, seed {drill.seed}", marks)
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    for log in drill.fleet.root.glob("*.log"):
        shutil.copy(log, logs / log.name)


# -- the command line ----------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The options; a bad value exits 2 with a message naming the option."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.chaos", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--duration", type=float, default=180.0, help="seconds of load (180)")
    parser.add_argument("--seed", type=int, default=None, help="the schedule's seed (random)")
    parser.add_argument("--users", type=int, default=12, help="concurrent viewers (12)")
    parser.add_argument("--out", type=Path, help="results directory (bench/results/chaos-<UTC>)")
    parser.add_argument(
        "--faults", default=",".join(KINDS), help="comma-separated fault kinds (all)"
    )
    parser.add_argument("--hold-scale", type=float, default=1.0, help="scale every fault's hold")
    parser.add_argument("--settle", type=float, default=6.0, help="seconds between faults (6)")
    parser.add_argument("--heartbeat", type=float, default=0.5, help="heartbeat interval s (0.5)")
    parser.add_argument("--snapshot", type=float, default=0.5, help="snapshot interval s (0.5)")
    parser.add_argument("--session", type=float, default=30.0, help="media s per session (30)")
    parser.add_argument("--bitrate", type=float, default=4e6, help="video bits/s (4e6)")
    parser.add_argument("--timeout", type=float, default=3.0, help="request timeout s (3)")
    parser.add_argument(
        "--disk-fault",
        action=argparse.BooleanOptionalAction,
        default=os.environ.get(DISK_FAULT_ENV, "1") == "1",
        help=f"inject disk-fail through the edges' fault-disks hook (default on; "
        f"{DISK_FAULT_ENV}=0 or --no-disk-fault skips it)",
    )
    parser.add_argument("--work", type=Path, help="the fleet's directory (a temporary one)")
    args = parser.parse_args(argv)
    if not 10 <= args.duration <= 3600:
        parser.error(f"--duration: {args.duration:g} is not 10..3600 s")
    if not 1 <= args.users <= 500:
        parser.error(f"--users: {args.users} is not 1..500")
    for name in ("hold_scale", "heartbeat", "snapshot", "timeout"):
        if not getattr(args, name) > 0:
            parser.error(f"--{name.replace('_', '-')}: must be > 0")
    kinds = [k.strip() for k in args.faults.split(",") if k.strip()]
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        parser.error(f"--faults: unknown fault {bad[0]!r} (known: {', '.join(KINDS)})")
    args.kinds = kinds
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1 << 31)
    try:
        args.player = PlayerConfig(
            bitrate_bps=args.bitrate, session_s=args.session, segment_bytes=1 << 20,
            startup_buffer_s=2.0, buffer_target_s=10.0, max_urls=3,
        )  # fmt: skip
    except ValueError as exc:
        parser.error(str(exc))
    return args


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM stops the drill (and its fleet) like Ctrl-C


def main(argv: Sequence[str] | None = None) -> int:
    """Run one drill; 0 on PASS, 1 on FAIL."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGTERM, _interrupt)
    started = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or RESULTS_DIR / f"chaos-{started}"
    with contextlib.ExitStack() as stack:
        work = args.work or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="chaos-")))
        fleet = ChaosFleet(
            work, heartbeat_s=args.heartbeat, snapshot_s=args.snapshot, seed=args.seed
        )
        bound = 3 * args.heartbeat + args.snapshot
        print(f"chaos drill: seed {args.seed}, {args.users} viewers, {args.duration:g} s")
        print(f"fleet in {work}")
        try:
            fleet.start()
            faults = make_schedule(
                args.seed, args.duration, fleet.edges, fleet.steering, args.kinds,
                settle_s=args.settle, hold_scale=args.hold_scale,
            )  # fmt: skip
            for f in faults:
                print(f"  at {f.at_s:6.1f} s  {f.kind:<16} {f.target:<11} for {f.hold_s:g} s")
            drill = Drill(
                fleet, faults, args.users, args.duration, args.player, args.timeout,
                args.disk_fault, args.seed,
            )  # fmt: skip
            asyncio.run(drill.run())
        except KeyboardInterrupt:
            print("chaos drill: interrupted")
            return 1
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            # The fleet did not come up: no drill to report (the logs say why).
            print(f"chaos drill: {exc}", file=sys.stderr)
            return 1
        finally:
            fleet.stop()
        doc = report_doc(drill, bound, started)
        write_results(drill, doc, out)
    print()
    print(report_text(doc), end="")
    print(f"\nresults: {out}")
    return 0 if doc["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
