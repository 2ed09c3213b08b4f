"""The control plane's HTTP face (aiohttp): the endpoints of docs/fleet-api.md.

A thin shell: handlers authenticate, parse JSON, hand the decision to `control.registry`
(pure) and write durable changes through `control.store` in one store thread. A background
task marks silent appliances down; SIGHUP (wired by `control.cli`) reloads the topology.

Errors are JSON, one line: `{"error": "...", "field": "..."}`. Bad input is 400 (not JSON),
422 (a field is wrong), 401/403 (token), 404 (unknown appliance) — never a 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import urlsplit

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
from control.registry import Registry, UnknownAppliance
from control.store import Store
from control.topology import Topology, TopologyError, load_topology
from edgefleet.fleet import ApplianceState, FieldError, bearer, parse_heartbeat
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
        for state in ApplianceState:
            self.appliances.labels(state.value)
        for result in ("ok", "error"):
            self.reloads.labels(result)

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
        """Mark down appliances that stopped heartbeating."""
        while True:
            await asyncio.sleep(self.tick_period_s())
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
    doc = await _json_body(request, empty_ok=True)
    if not isinstance(doc, dict):
        raise ApiError(422, "must be a JSON object", "$")
    for key in ("software", "boot_id", "base_url", "inventory_epoch"):
        value = doc.get(key, "")
        if not isinstance(value, str) or len(value) > 200:
            raise ApiError(422, "must be a string of at most 200 characters", key)
    base_url = doc.get("base_url", "")
    parts = urlsplit(base_url)
    if base_url and (parts.scheme not in ("http", "https") or not parts.hostname):
        raise ApiError(422, "must be an http(s) URL", "base_url")
    reply = ctl.registry.register(
        name,
        ctl.clock(),
        software=doc.get("software", ""),
        boot_id=doc.get("boot_id", ""),
        base_url=base_url,
        inventory_epoch=doc.get("inventory_epoch", ""),
    )
    ctl.metrics.registrations.inc()
    log.info("appliance %s registered (software %r)", name, doc.get("software", ""))
    return web.json_response(reply.to_json())


async def heartbeat(request: web.Request) -> web.Response:
    """POST /v1/appliances/{name}/heartbeat"""
    ctl = request.app[CONTROL]
    name = ctl.appliance_name(request)
    doc = await _json_body(request)
    prefixes = doc.get("prefixes") if isinstance(doc, dict) else None
    if isinstance(prefixes, list):
        # parse_heartbeat accepts integers (ip_network(5) is 0.0.0.5/32); we need strings.
        for i, prefix in enumerate(prefixes):
            if not isinstance(prefix, str):
                raise ApiError(422, "must be an address prefix string", f"prefixes[{i}]")
    try:
        hb = parse_heartbeat(doc)
    except FieldError as exc:
        raise ApiError(422, str(exc), exc.field) from None
    except (TypeError, ValueError, OverflowError) as exc:
        # The parser should name a field for every bad input; never a 500 if it does not.
        log.warning("heartbeat from %s: unexpected parse failure: %r", name, exc)
        raise ApiError(422, f"invalid heartbeat: {exc}", "$") from None
    reply = ctl.registry.heartbeat(name, hb, ctl.clock())
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
    task = spawn(ctl.tick_forever(), name="control-tick")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
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
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    return app
