"""The control plane's HTTP face (aiohttp): the endpoints of docs/fleet-api.md.

A thin shell: handlers authenticate, parse JSON, hand the decision to `control.registry`
(pure) and write durable changes through `control.store` in one store thread. A background
task marks silent appliances down; another writes the popularity counts heartbeats carry
(`control.popularity`) to the store every `popularity_flush_s`; SIGHUP (wired by
`control.cli`) reloads the topology.

Errors are JSON, one line: `{"error": "...", "field": "..."}`. Bad input is 400 (not JSON),
422 (a field is wrong), 401/403 (token), 404 (unknown appliance) — never a 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from typing import Any, TypeVar

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)

from control.auth import ADMIN, STEERING, AuthResult, RoleTokens, appliance_role
from control.config import ControlConfig
from control.popularity import PopularityBuffer, parse_day, utc_day
from control.registry import Registry, UnknownAppliance
from control.store import ManifestConflict, StaleGeneration, Store
from control.topology import Topology, TopologyError, load_topology
from edgefleet.fleet import ApplianceState, FieldError, bearer
from edgefleet.heartbeat import Heartbeat, Registration
from edgefleet.manifests import (
    FillManifest,
    canonical_manifest,
    manifest_to_doc,
    parse_publication,
)
from edgefleet.records import DailyRecord, write_popularity
from edgefleet.tasks import spawn

log = logging.getLogger("edgefleet.control")

T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """A request refused with a JSON error; raised by handlers, answered by the middleware."""

    def __init__(
        self,
        status: int,
        message: str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.headers = headers or {}

    def response(self) -> web.Response:
        """The error as an HTTP response."""
        body: dict[str, Any] = {"error": self.message}
        if self.field is not None:
            body["field"] = self.field
        return web.json_response(body, status=self.status, headers=self.headers)


class ControlMetrics:
    """The counters and gauges control exports, in a registry of their own (one per service).

    Counters move as requests arrive; the fleet gauges (appliances by state, snapshot
    version) are set from the registry when /metrics is scraped.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "edgefleet_control_requests",
            "HTTP requests answered, by route, method and status",
            ["route", "method", "status"],
            registry=r,
        )
        self.heartbeats = Counter(
            "edgefleet_control_heartbeats",
            "Heartbeats accepted, by whether a full inventory was asked for",
            ["resync"],
            registry=r,
        )
        self.registrations = Counter(
            "edgefleet_control_registrations", "Appliance registrations", registry=r
        )
        self.marked_down = Counter(
            "edgefleet_control_marked_down",
            "Times an appliance was marked down for missed heartbeats",
            registry=r,
        )
        self.reloads = Counter(
            "edgefleet_control_topology_reloads",
            "Topology reloads (SIGHUP), by result",
            ["result"],
            registry=r,
        )
        self.appliances = Gauge(
            "edgefleet_control_appliances", "Appliances by effective state", ["state"], registry=r
        )
        self.snapshot_version = Gauge(
            "edgefleet_control_snapshot_version", "Current fleet snapshot version", registry=r
        )
        self.manifest_generation = Gauge(
            "edgefleet_control_manifest_generation",
            "Generation of the newest fill publication stored (0: none yet)",
            registry=r,
        )
        self.manifests_published = Counter(
            "edgefleet_control_manifests_published",
            "Appliance manifests stored by fill publications",
            registry=r,
        )
        self.manifests_served = Counter(
            "edgefleet_control_manifests_served",
            "Manifest requests answered, by result (200 sent, 304 not modified, 404 none)",
            ["result"],
            registry=r,
        )
        self.popularity_bytes = Counter(
            "edgefleet_control_popularity_bytes",
            "Body bytes served that heartbeats reported (the fleet's own popularity counts)",
            registry=r,
        )
        self.popularity_pending = Gauge(
            "edgefleet_control_popularity_pending_keys",
            "(day, region, content id) counts held in memory, not yet written to the store",
            registry=r,
        )
        self.popularity_flushes = Counter(
            "edgefleet_control_popularity_flushes",
            "Writes of the popularity counts to the store, by result",
            ["result"],
            registry=r,
        )
        for state in ApplianceState:
            self.appliances.labels(state.value)
        for result in ("ok", "error"):
            self.reloads.labels(result)
            self.popularity_flushes.labels(result)
        for result in ("200", "304", "404"):
            self.manifests_served.labels(result)

    def render(self, counts: dict[ApplianceState, int], version: int) -> bytes:
        """The exposition text, with the fleet gauges brought up to date."""
        for state, n in counts.items():
            self.appliances.labels(state.value).set(n)
        self.snapshot_version.set(version)
        return generate_latest(self.registry)


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

    def appliance_name(self, request: web.Request) -> str:
        """The {name} of the path, after checking the caller may speak for it; 404 if unknown."""
        name = request.match_info["name"]
        self.authorize(request, appliance_role(name))
        if self.registry.topology.appliance(name) is None:
            raise ApiError(404, f"unknown appliance '{name[:80]}'", "name")
        return name

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


async def _json_body(request: web.Request, *, empty_ok: bool = False) -> Any:
    raw = await request.read()
    if not raw.strip() and empty_ok:
        return {}
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(400, f"malformed JSON: {exc}", "$") from None
    except RecursionError:
        raise ApiError(400, "malformed JSON: nested too deeply", "$") from None


# -- handlers --------------------------------------------------------------------------------


async def register(request: web.Request) -> web.Response:
    """POST /v1/appliances/{name}/register"""
    ctl = request.app[CONTROL]
    name = ctl.appliance_name(request)
    try:
        registration = Registration.from_json(await _json_body(request, empty_ok=True))
    except FieldError as exc:
        raise ApiError(422, str(exc), exc.field) from None
    reply = ctl.registry.register(name, ctl.clock(), registration)
    ctl.metrics.registrations.inc()
    log.info("appliance %s registered (software %r)", name, registration.software)
    return web.json_response(reply.to_json())


async def heartbeat(request: web.Request) -> web.Response:
    """POST /v1/appliances/{name}/heartbeat"""
    ctl = request.app[CONTROL]
    name = ctl.appliance_name(request)
    try:
        hb = Heartbeat.from_json(await _json_body(request))
    except FieldError as exc:
        raise ApiError(422, str(exc), exc.field) from None
    reply = ctl.registry.heartbeat(name, hb, ctl.clock())
    if hb.served:
        ctl.count_served(name, hb.served)
    ctl.metrics.heartbeats.labels(str(reply.resync).lower()).inc()
    return web.json_response(reply.to_json())


async def drain(request: web.Request) -> web.Response:
    """POST /v1/appliances/{name}/drain (admin)"""
    ctl = request.app[CONTROL]
    ctl.authorize(request, ADMIN)
    name = request.match_info["name"]
    if ctl.registry.topology.appliance(name) is None:
        raise ApiError(404, f"unknown appliance '{name[:80]}'", "name")
    doc = await _json_body(request)
    if not isinstance(doc, dict):
        raise ApiError(422, "must be a JSON object", "$")
    flag = doc.get("drain")
    if not isinstance(flag, bool):
        raise ApiError(422, "must be true or false", "drain")
    # Durable before it is acknowledged (and before steering can see it).
    await ctl.in_store_thread(ctl.store.set_drain, name, flag)
    if ctl.registry.set_drain(name, flag):
        log.info("appliance %s: drain %s by an operator", name, "set" if flag else "cleared")
    return web.json_response({"name": name, "drain": flag})


def _etag_matches(header: str, etag: str) -> bool:
    """If-None-Match (RFC 9110 §13.1.2): weak comparison against a list of entity tags."""
    if header.strip() == "*":
        return True
    for candidate in header.split(","):
        tag = candidate.strip()
        if tag.startswith("W/"):
            tag = tag[2:]
        if tag == etag:
            return True
    return False


async def snapshot(request: web.Request) -> web.Response:
    """GET /v1/snapshot (steering, admin)"""
    ctl = request.app[CONTROL]
    ctl.authorize(request, STEERING, ADMIN)
    if ctl.warming_up():
        raise ApiError(503, "control is relearning the fleet after a restart", "$")
    etag = f'"{ctl.registry.version}"'
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if _etag_matches(request.headers.get("If-None-Match", ""), etag):
        return web.Response(status=304, headers=headers)
    held = request.query.get("contents_version", "")
    contents_version = int(held) if held.isascii() and held.isdigit() and len(held) < 20 else None
    body = ctl.registry.snapshot_json(ctl.wall_clock(), contents_version)
    return web.Response(body=body, content_type="application/json", headers=headers)


async def appliances(request: web.Request) -> web.Response:
    """GET /v1/appliances (admin)"""
    ctl = request.app[CONTROL]
    ctl.authorize(request, ADMIN)
    body = {
        "snapshot_version": ctl.registry.version,
        "appliances": ctl.registry.appliances_view(ctl.clock()),
    }
    return web.json_response(body)


async def metrics(request: web.Request) -> web.Response:
    """GET /metrics"""
    ctl = request.app[CONTROL]
    text = ctl.metrics.render(ctl.registry.counts(), ctl.registry.version)
    return web.Response(body=text, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def healthz(request: web.Request) -> web.Response:
    """GET /healthz"""
    return web.Response(text="ok")


# -- fill: manifests, the fleet view, popularity ---------------------------------------------

# Rows per store read while streaming an export: bounded memory, few thread hops.
POPULARITY_PAGE = 20_000


async def _read_limited(request: web.Request, limit: int) -> bytes:
    """The body, refused with 413 past *limit* bytes (this route's own limit, not the app's)."""
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, f"body over {limit} bytes", "$")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(1 << 20):
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"body over {limit} bytes", "$")
        chunks.append(chunk)
    return b"".join(chunks)


def _check_publication(
    raw: bytes, known: frozenset[str]
) -> tuple[int, list[FillManifest], list[tuple[str, dict[str, Any]]]]:
    """Decode and check a publication (run off the event loop: it may hold millions of files).

    Every appliance it names, as a manifest's owner or as a source, must be in the topology:
    a plan made against another fleet must not be half applied.
    """
    try:
        generation, manifests = parse_publication(_decode(raw))
    except FieldError as exc:
        raise ApiError(422, str(exc), exc.field) from None
    for i, m in enumerate(manifests):
        if m.appliance not in known:
            field = f"manifests[{i}].appliance"
            raise ApiError(422, f"{field}: unknown appliance '{m.appliance}'", field)
        for j, f in enumerate(m.files):
            for k, source in enumerate(f.sources):
                if source not in known:
                    field = f"manifests[{i}].files[{j}].sources[{k}]"
                    raise ApiError(422, f"{field}: unknown appliance '{source}'", field)
    return generation, manifests, [(m.appliance, manifest_to_doc(m)) for m in manifests]


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(400, f"malformed JSON: {exc}", "$") from None
    except RecursionError:
        raise ApiError(400, "malformed JSON: nested too deeply", "$") from None


def _check_manifest(
    raw: bytes, name: str, known: frozenset[str]
) -> tuple[int, str, frozenset[str]]:
    """Decode and check one appliance's manifest (off the event loop: ~10 MB, 50,000 files).

    Returns (generation, canonical JSON text, source names).
    """
    try:
        head, text, sources = canonical_manifest(_decode(raw))
    except FieldError as exc:
        raise ApiError(422, str(exc), exc.field) from None
    if head.appliance != name:
        raise ApiError(422, f"appliance: must be '{name}', the appliance of the path", "appliance")
    unknown = sorted(sources - known)
    if unknown:
        # Name the first place it is used, as a whole publication does.
        doc = json.loads(text)
        for j, f in enumerate(doc["files"]):
            for k, source in enumerate(f["sources"]):
                if source in unknown:
                    field = f"files[{j}].sources[{k}]"
                    raise ApiError(422, f"{field}: unknown appliance '{source}'", field)
    return head.generation, text, sources


async def put_manifests(request: web.Request) -> web.Response:
    """PUT /v1/manifests (admin): store a fill publication, all of it or nothing."""
    ctl = request.app[CONTROL]
    ctl.authorize(request, ADMIN)
    raw = await _read_limited(request, ctl.config.max_publication_bytes)
    known = frozenset(ctl.registry.topology.appliance_names())
    loop = asyncio.get_running_loop()
    generation, manifests, bodies = await loop.run_in_executor(None, _check_publication, raw, known)
    try:
        stored = await ctl.in_store_thread(
            lambda: ctl.store.put_publication(generation, bodies, keep=ctl.config.manifests_keep)
        )
    except StaleGeneration as exc:
        raise ApiError(409, str(exc), "generation") from None
    for m in manifests:
        head = ctl.manifest_heads.get(m.appliance)
        # Two publications may finish out of order here; the store took only the newer one.
        if head is None or head[0] < generation:
            ctl.manifest_heads[m.appliance] = (generation, frozenset(m.source_names()))
    ctl.newest_generation = max(ctl.newest_generation, generation)
    ctl.metrics.manifest_generation.set(ctl.newest_generation)
    ctl.metrics.manifests_published.inc(stored)
    log.info("fill publication %d stored: %d manifests", generation, stored)
    return web.json_response({"generation": generation, "appliances": stored})


async def put_manifest(request: web.Request) -> web.Response:
    """PUT /v1/appliances/{name}/manifest (admin): store one appliance's manifest.

    How a large fleet's planner publishes: appliance by appliance, each body ~10 MB instead of
    one of ~10 GB. The generation rules against whole publications: control/store.py.
    """
    ctl = request.app[CONTROL]
    ctl.authorize(request, ADMIN)
    name = request.match_info["name"]
    if ctl.registry.topology.appliance(name) is None:
        raise ApiError(404, f"unknown appliance '{name[:80]}'", "name")
    raw = await _read_limited(request, ctl.config.max_publication_bytes)
    known = frozenset(ctl.registry.topology.appliance_names())
    loop = asyncio.get_running_loop()
    generation, text, sources = await loop.run_in_executor(None, _check_manifest, raw, name, known)
    del raw
    try:
        stored = await ctl.in_store_thread(
            lambda: ctl.store.put_appliance_manifest(
                name, generation, text, keep=ctl.config.manifests_keep
            )
        )
    except (StaleGeneration, ManifestConflict) as exc:
        raise ApiError(409, str(exc), "generation") from None
    head = ctl.manifest_heads.get(name)
    # Two PUTs may finish out of order here; the store took only the newer one.
    if head is None or head[0] < generation:
        ctl.manifest_heads[name] = (generation, sources)
    if stored:
        ctl.newest_generation = max(ctl.newest_generation, generation)
        ctl.metrics.manifest_generation.set(ctl.newest_generation)
        ctl.metrics.manifests_published.inc()
        log.info("fill manifest %d of %s stored", generation, name)
    return web.json_response({"appliance": name, "generation": generation, "stored": stored})


def _manifest_head(found: tuple[int, str] | None) -> tuple[int, frozenset[str]] | None:
    if found is None:
        return None
    files = json.loads(found[1]).get("files", [])
    return found[0], frozenset(s for f in files for s in f.get("sources", []))


def _live_sources(
    ctl: Control, generation: int, sources: frozenset[str]
) -> tuple[dict[str, str], dict[str, str], str]:
    """(source URLs, source states, ETag) of a manifest as control sees the fleet now.

    The ETag covers the sources' live URLs and states too, not only the generation: an agent
    holding an older view of where to fetch from gets the new one, not a 304.
    """
    urls, states = ctl.registry.sources(sources)
    live = json.dumps([urls, states], sort_keys=True, separators=(",", ":")).encode()
    return urls, states, f'"{generation}-{zlib.crc32(live):08x}"'


async def get_manifest(request: web.Request) -> web.Response:
    """GET /v1/appliances/{name}/manifest (the appliance itself, or admin)."""
    ctl = request.app[CONTROL]
    name = request.match_info["name"]
    ctl.authorize(request, appliance_role(name), ADMIN)
    if ctl.registry.topology.appliance(name) is None:
        raise ApiError(404, f"unknown appliance '{name[:80]}'", "name")
    if name not in ctl.manifest_heads:

        def load() -> tuple[int, frozenset[str]] | None:
            return _manifest_head(ctl.store.latest_manifest_text(name))

        head = await ctl.in_store_thread(load)
        ctl.manifest_heads.setdefault(name, head)
    head = ctl.manifest_heads[name]
    if head is None:
        ctl.metrics.manifests_served.labels("404").inc()
        raise ApiError(404, f"no fill manifest published for '{name}'", "name")
    generation, sources = head
    urls, states, etag = _live_sources(ctl, generation, sources)
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if _etag_matches(request.headers.get("If-None-Match", ""), etag):
        ctl.metrics.manifests_served.labels("304").inc()
        return web.Response(status=304, headers=headers)
    found = await ctl.in_store_thread(ctl.store.latest_manifest_text, name)
    if found is None:  # cannot happen: manifests are only ever replaced by newer ones
        raise ApiError(404, f"no fill manifest published for '{name}'", "name")
    if found[0] != generation:  # a publication landed while we read: serve that one
        head = _manifest_head(found)
        assert head is not None
        generation, sources = head
        urls, states, etag = _live_sources(ctl, generation, sources)
        headers["ETag"] = etag
    text = found[1]
    # The stored text is the manifest object; splice the live fields in instead of decoding
    # and re-encoding a document of perhaps a million files.
    body = (
        f'{text[:-1]},"source_urls":{json.dumps(urls, separators=(",", ":"))},'
        f'"source_states":{json.dumps(states, separators=(",", ":"))}}}'
    )
    ctl.metrics.manifests_served.labels("200").inc()
    return web.Response(text=body, content_type="application/json", headers=headers)


async def fleet(request: web.Request) -> web.Response:
    """GET /v1/fleet (admin): regions, sites, appliances and inventories for the planner."""
    ctl = request.app[CONTROL]
    ctl.authorize(request, ADMIN)
    view = ctl.registry.fleet_view()  # a fresh copy: safe to encode in another thread
    encoded = await asyncio.get_running_loop().run_in_executor(
        None, lambda: json.dumps(view, separators=(",", ":"))
    )
    return web.Response(text=encoded, content_type="application/json")


def _popularity_text(rows: list[tuple[str, str, str, int]], fmt: str, header: bool) -> str:
    buf = io.StringIO()
    records = (DailyRecord(date.fromisoformat(day), region, cid, n) for day, region, cid, n in rows)
    write_popularity(records, buf, fmt)
    text = buf.getvalue()
    if fmt == "csv" and not header:
        # write_popularity starts every CSV with its header line; one is enough per export.
        text = text.partition("\n")[2]
    return text


POPULARITY_TYPES = {"csv": "text/csv", "jsonl": "application/x-ndjson"}


async def popularity(request: web.Request) -> web.StreamResponse:
    """GET /v1/popularity?from=&to=&format= (admin): daily records, streamed page by page."""
    ctl = request.app[CONTROL]
    ctl.authorize(request, ADMIN)
    days = []
    for key in ("from", "to"):
        try:
            days.append(parse_day(request.query.get(key, ""), key))
        except ValueError as exc:
            raise ApiError(422, str(exc), key) from None
    first_day, last_day = days
    if first_day > last_day:
        raise ApiError(422, "to: must not be before from", "to")
    fmt = request.query.get("format", "csv")
    if fmt not in POPULARITY_TYPES:
        raise ApiError(422, "format: must be csv or jsonl", "format")
    # What heartbeats reported up to now belongs in the export: write it first.
    await ctl.flush_popularity()
    response = web.StreamResponse(
        headers={"Content-Type": f"{POPULARITY_TYPES[fmt]}; charset=utf-8"}
    )
    await response.prepare(request)
    after: tuple[str, str, str] | None = None
    header = True
    while True:
        rows = await ctl.in_store_thread(
            ctl.store.popularity_page, first_day, last_day, after, POPULARITY_PAGE
        )
        text = _popularity_text(rows, fmt, header)
        header = False
        if text:
            await response.write(text.encode())
        if len(rows) < POPULARITY_PAGE:
            break
        after = rows[-1][:3]
    await response.write_eof()
    return response


# -- application -----------------------------------------------------------------------------


@web.middleware
async def _errors_and_counts(request: web.Request, handler: Handler) -> web.StreamResponse:
    """JSON errors for ApiError and aiohttp's own 4xx; a request counter by route."""
    route = request.match_info.route.resource
    label = route.canonical if route is not None else "unmatched"
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except ApiError as exc:
        status = exc.status
        return exc.response()
    except web.HTTPException as exc:  # 404 for unknown paths, 405, 413 from aiohttp itself
        status = exc.status
        if exc.status < 400:
            raise
        allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else {}
        return ApiError(exc.status, exc.reason, headers=allow).response()
    except UnknownAppliance as exc:  # removed by a topology reload while the request waited
        status = 404
        return ApiError(404, f"unknown appliance '{str(exc.args[0])[:80]}'", "name").response()
    finally:
        request.app[CONTROL].metrics.requests.labels(label, request.method, str(status)).inc()


async def _background(app: web.Application) -> AsyncIterator[None]:
    ctl = app[CONTROL]
    tasks = [
        spawn(ctl.tick_forever(), name="control-tick"),
        spawn(ctl.flush_popularity_forever(), name="control-popularity"),
    ]
    yield
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    # Counts acknowledged to appliances are written before the store closes.
    await ctl.flush_popularity()
    ctl.close()


def make_app(control: Control) -> web.Application:
    """The aiohttp application serving *control*."""
    app = web.Application(
        middlewares=[_errors_and_counts], client_max_size=control.config.max_request_bytes
    )
    app[CONTROL] = control
    app.cleanup_ctx.append(_background)
    app.router.add_post("/v1/appliances/{name}/register", register)
    app.router.add_post("/v1/appliances/{name}/heartbeat", heartbeat)
    app.router.add_post("/v1/appliances/{name}/drain", drain)
    app.router.add_get("/v1/snapshot", snapshot)
    app.router.add_get("/v1/appliances", appliances)
    app.router.add_put("/v1/manifests", put_manifests)
    app.router.add_get("/v1/appliances/{name}/manifest", get_manifest)
    app.router.add_put("/v1/appliances/{name}/manifest", put_manifest)
    app.router.add_get("/v1/fleet", fleet)
    app.router.add_get("/v1/popularity", popularity)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    return app
